import ArbiterTesting
import Testing

/// The README's demo, in short: real processes, a bank and the coordinator killed mid-run, and
/// every check passing. Fails if any check fails.
@Suite("Bank demo")
struct BankDemoTests {
    @Test func aShortDemoWithCrashesPassesEveryCheck() async throws {
        let demo = try ManagedProcess(name: "bank-demo", executable: try builtProduct("bank-demo"), arguments: [
            "--nodes", "3", "--accounts", "10", "--transfers", "150", "--concurrency", "6", "--seed", "7",
        ])
        try await demo.waitForExit(timeout: .seconds(600))
        let log = demo.log
        #expect(demo.exitStatus == 0, "\(log.suffix(3000))")
        #expect(log.contains("killing coordinator with SIGKILL"), "the coordinator was killed mid-run")
        #expect(log.contains("All checks passed."), "\(log.suffix(3000))")
        #expect(!log.contains("✘"))
    }

    @Test func aShortDemoWithBatchedSubmitsAndCrashesPassesEveryCheck() async throws {
        let demo = try ManagedProcess(name: "bank-demo-batching", executable: try builtProduct("bank-demo"), arguments: [
            "--nodes", "3", "--accounts", "10", "--transfers", "150", "--concurrency", "6", "--seed", "8", "--client-batching",
        ])
        try await demo.waitForExit(timeout: .seconds(600))
        let log = demo.log
        #expect(demo.exitStatus == 0, "\(log.suffix(3000))")
        #expect(log.contains("sharing batched requests"))
        #expect(log.contains("killing coordinator with SIGKILL"), "the coordinator was killed mid-run")
        #expect(log.contains("All checks passed."), "\(log.suffix(3000))")
        #expect(!log.contains("✘"))
    }
}
