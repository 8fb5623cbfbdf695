import Foundation
import Synchronization
import Testing

/// The suite's results: one row per scenario, printed as a table when the suite ends (and after
/// each scenario, so a run cut short still shows what it did). Also written to
/// `ARBITER_E2E_TABLE` when that variable names a file.
final class ResultsTable: Sendable {
    struct Row: Sendable {
        var scenario: String
        var transactions: Int
        var committed: Int
        var aborted: Int
        var crashes: Int
        var violations: Int
        /// The scenario itself failed (a process that would not start, a condition never met).
        var failed: Bool
        var seconds: Double
    }

    static let shared = ResultsTable()
    private let rows = Mutex<[Row]>([])
    private let clock = ContinuousClock()
    private let started = Mutex<ContinuousClock.Instant?>(nil)

    func add(_ row: Row) {
        rows.withLock { $0.append(row) }
    }

    func begin() {
        started.withLock { if $0 == nil { $0 = clock.now } }
    }

    /// The table in Markdown.
    var markdown: String {
        let rows = rows.withLock { $0 }
        var lines = [
            "| scenario | transactions | committed | aborted | crashes injected | violations | seconds |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in rows {
            let violations = row.failed ? "\(row.violations) (scenario failed)" : "\(row.violations)"
            lines.append("| \(row.scenario) | \(row.transactions) | \(row.committed) | \(row.aborted) | \(row.crashes) | \(violations) | \(String(format: "%.1f", row.seconds)) |")
        }
        let total = rows.reduce(into: (0, 0, 0, 0, 0)) { sum, row in
            sum.0 += row.transactions
            sum.1 += row.committed
            sum.2 += row.aborted
            sum.3 += row.crashes
            sum.4 += row.violations
        }
        let wall = started.withLock { $0 }.map { clock.now - $0 }
        let seconds = wall.map { String(format: "%.1f", Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18) } ?? "–"
        lines.append("| **total (\(rows.count) scenarios)** | \(total.0) | \(total.1) | \(total.2) | \(total.3) | \(total.4) | \(seconds) |")
        return lines.joined(separator: "\n")
    }

    func publish() {
        let table = markdown
        print("\nArbiter end-to-end results\n\n\(table)\n")
        if let path = ProcessInfo.processInfo.environment["ARBITER_E2E_TABLE"], !path.isEmpty {
            try? (table + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }
    }
}

/// Prints the results table once the suite it is attached to has run.
struct ResultsTableTrait: SuiteTrait, TestScoping {
    var isRecursive: Bool { false }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        ResultsTable.shared.begin()
        do {
            try await function()
        } catch {
            ResultsTable.shared.publish()
            throw error
        }
        ResultsTable.shared.publish()
    }
}

extension Trait where Self == ResultsTableTrait {
    /// Prints the end-to-end results table when the suite ends.
    static var resultsTable: Self { ResultsTableTrait() }
}
