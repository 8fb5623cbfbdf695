import ArbiterCore

/// Totals over many simulated runs.
public struct SweepSummary: Sendable {
    public private(set) var runs = 0
    public private(set) var transactions = 0
    public private(set) var committed = 0
    public private(set) var aborted = 0
    public private(set) var steps = 0
    public private(set) var faults: [FaultKind: Int] = [:]
    public private(set) var failedSeeds: [UInt64] = []
    public private(set) var firstFailure: SimulationReport?

    public init() {}

    public mutating func add(_ report: SimulationReport) {
        runs += 1
        transactions += report.transactions
        committed += report.committed
        aborted += report.aborted
        steps += report.steps
        for (kind, count) in report.faults { faults[kind, default: 0] += count }
        if !report.passed {
            failedSeeds.append(report.seed)
            if firstFailure == nil { firstFailure = report }
        }
    }

    public mutating func merge(_ other: SweepSummary) {
        runs += other.runs
        transactions += other.transactions
        committed += other.committed
        aborted += other.aborted
        steps += other.steps
        for (kind, count) in other.faults { faults[kind, default: 0] += count }
        failedSeeds += other.failedSeeds
        if firstFailure == nil { firstFailure = other.firstFailure }
    }

    public func description(elapsed: Duration? = nil) -> String {
        let faultList = FaultKind.allCases.map { "\($0.rawValue)=\(faults[$0, default: 0])" }.joined(separator: " ")
        var text = "\(runs) seeds, \(transactions) transactions (\(committed) committed, \(aborted) aborted), \(steps) steps"
        if let elapsed { text += " in \(elapsed)" }
        text += "\nfaults injected: \(faultList)"
        text += failedSeeds.isEmpty ? "\nall invariants held" : "\nFAILED seeds: \(failedSeeds.prefix(20).map(String.init).joined(separator: ", "))"
        return text
    }
}
