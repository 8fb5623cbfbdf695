import ArbiterCore
import ArbiterSimulation
import ArgumentParser

/// `arbiter simulate`: runs the deterministic simulator over many seeds, or replays one.
struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the protocol core through the deterministic fault simulator.",
        discussion: """
            Each seed picks its own fault mix (message loss, duplication, reordering, delay, \
            partitions, crashes at any step with unforced records lost) and load, runs it, and checks \
            the two-phase-commit invariants after every step and liveness at the end. A failing seed \
            prints a trace and replays exactly with --seed.
            """
    )

    @Option(help: "Replay only this seed.")
    var seed: UInt64?

    @Option(help: "The first seed of a sweep.")
    var start: UInt64 = 1

    @Option(help: "How many seeds to run in a sweep.")
    var seeds: Int = 1000

    @Option(help: "Transactions per seed (default: each seed picks 8 to 16).")
    var transactions: Int?

    @Option(help: "The protocol logic: correct, or a deliberately broken variant (\(ProtocolVariant.broken.map(\.rawValue).joined(separator: ", "))).")
    var variant: String = ProtocolVariant.correct.rawValue

    @Option(help: "How many of the last events a failure report shows.")
    var traceLines: Int = 60

    @Flag(help: "Print each seed's summary, not only failures.")
    var verbose = false

    mutating func run() throws {
        guard let variant = ProtocolVariant(rawValue: variant) else {
            throw ValidationError("unknown variant '\(self.variant)'; choose one of \(ProtocolVariant.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let seeds: [UInt64] = seed.map { [$0] } ?? (0..<UInt64(max(seeds, 0))).map { start + $0 }
        var summary = SweepSummary()
        let clock = ContinuousClock()
        let began = clock.now
        for seed in seeds {
            let options = SimulationOptions.swarm(seed: seed, transactions: transactions)
            let report = Simulation(seed: seed, options: options, variant: variant, traceLines: traceLines).run()
            summary.add(report)
            if verbose || !report.passed || self.seed != nil { print(report) }
        }
        print(summary.description(elapsed: clock.now - began))
        if summary.failedSeeds.count > 0 { throw ExitCode.failure }
    }
}
