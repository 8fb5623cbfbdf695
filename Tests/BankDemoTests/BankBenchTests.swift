import ArbiterTesting
import Foundation
import Testing

/// The benchmark, run for a moment: it measures its floors and the skeleton of a transfer, runs a
/// phase against real processes, checks the bank's invariants, and writes its JSON. CI does not run
/// it at length (that is the benchmark's own job); this keeps it from rotting.
@Suite("Bank benchmark")
struct BankBenchTests {
    @Test func aShortRunMeasuresTheFloorsTheSkeletonAndAPhase() async throws {
        let directory = try TemporaryDirectory(prefix: "bank-bench-test")
        defer { directory.remove() }
        let json = directory.path + "/results.json"
        let bench = try ManagedProcess(name: "bank-bench", executable: try builtProduct("bank-bench"), arguments: [
            "--concurrency", "1", "--wait", "decision", "--duration", "3", "--warmup", "1", "--accounts", "50",
            "--fsync-samples", "10", "--round-trip-samples", "20", "--skeleton-samples", "25", "--no-perf",
            "--data-directory", directory.path + "/data", "--json", json,
        ])
        try await bench.waitForExit(timeout: .seconds(300))
        let log = bench.log
        #expect(bench.exitStatus == 0, "\(log.suffix(3000))")
        #expect(log.contains("skeleton of a transfer p50"), "\(log.suffix(3000))")

        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
        let floors = try #require(report["floorsBefore"] as? [String: Any])
        let skeleton = try #require(floors["skeleton"] as? [String: Any], "the skeleton is measured with the floors")
        #expect(skeleton["count"] as? Int == 25)
        #expect((skeleton["p50Nanoseconds"] as? Double ?? 0) > 0)

        let phases = try #require(report["phases"] as? [[String: Any]])
        #expect(phases.count == 1)
        let phase = try #require(phases.first)
        #expect((phase["committed"] as? Int ?? 0) > 0)
        #expect((phase["p50OverSkeleton"] as? Double ?? 0) > 0, "a decision phase at C=1 is read against the skeleton")

        let checks = try #require((report["invariants"] as? [String: Any])?["checks"] as? [[String: Any]])
        #expect(!checks.isEmpty)
        #expect(checks.allSatisfy { $0["passed"] as? Bool == true }, "\(checks)")
    }
}
