import ArbiterCore
import ArbiterSimulation
import Foundation
import Synchronization
import Testing

/// The deterministic simulation sweep: many seeds, each with its own fault mix, every invariant
/// checked after every step and liveness at the end.
///
/// Environment:
/// - `ARBITER_SIM_SEEDS=N` runs N seeds (default 4,000); `ARBITER_SIM_START=S` starts at seed S.
/// - `ARBITER_SIM_LONG=1` runs seeds until at least 1,000,000 transactions have run.
/// - `ARBITER_SIM_SEED=S` with the `replay` test replays one seed and prints its trace.
@Suite("Simulation")
struct SimulationTests {
    static let environment = ProcessInfo.processInfo.environment

    @Test("a sweep of seeds holds every invariant, with every fault kind injected")
    func sweep() async throws {
        let start = UInt64(Self.environment["ARBITER_SIM_START"] ?? "") ?? 1
        let long = Self.environment["ARBITER_SIM_LONG"] == "1"
        let seedCount = UInt64(Self.environment["ARBITER_SIM_SEEDS"] ?? "") ?? (long ? 90_000 : 4_000)
        let transactionsMin = long ? 1_000_000 : 10_000

        var summary = SweepSummary()
        var next = start
        let clock = ContinuousClock()
        let began = clock.now
        // Whole batches run in parallel, one seed range per task; keep going in long mode until
        // the transaction target is met.
        repeat {
            summary.merge(await Self.runParallel(from: next, count: seedCount))
            next += seedCount
        } while long && summary.transactions < transactionsMin && summary.failedSeeds.isEmpty
        print(summary.description(elapsed: clock.now - began))

        if let failure = summary.firstFailure {
            Issue.record("\(failure)")
        }
        #expect(summary.failedSeeds.isEmpty)
        #expect(summary.runs >= 1_000)
        #expect(summary.transactions >= transactionsMin)
        for kind in FaultKind.allCases {
            #expect(summary.faults[kind, default: 0] > 0, "fault kind \(kind) was never injected")
        }
    }

    @Test("a seed replays exactly")
    func replay() {
        let seed = UInt64(Self.environment["ARBITER_SIM_SEED"] ?? "") ?? 30
        let first = Simulation(seed: seed, traceLines: 400).run()
        let second = Simulation(seed: seed, traceLines: 400).run()
        if Self.environment["ARBITER_SIM_SEED"] != nil { print(first) }
        #expect(first.passed, "\(first)")
        #expect(first.steps == second.steps)
        #expect(first.faults == second.faults)
        #expect(first.committed == second.committed && first.aborted == second.aborted)
        #expect(first.simulatedTime == second.simulatedTime)
    }

    @Test("different seeds pick different fault mixes")
    func swarm() {
        let mixes = Set((1...50).map { SimulationOptions.swarm(seed: $0) })
        #expect(mixes.count > 40)
    }

    /// Runs seeds `start..<start+count` on dedicated threads, not on Swift's cooperative pool,
    /// so that a long CPU-bound sweep never starves the other tests' tasks.
    static func runParallel(from start: UInt64, count: UInt64) async -> SweepSummary {
        let lanes = UInt64(max(ProcessInfo.processInfo.activeProcessorCount, 1))
        let results = Mutex<[SweepSummary]>([])
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            for lane in 0..<lanes {
                Thread {
                    var summary = SweepSummary()
                    var seed = start + lane
                    while seed < start + count {
                        summary.add(Simulation(seed: seed).run())
                        seed += lanes
                    }
                    let finished = results.withLock { results in
                        results.append(summary)
                        return results.count == Int(lanes)
                    }
                    if finished { done.resume() }
                }.start()
            }
        }
        return results.withLock { $0.reduce(into: SweepSummary()) { $0.merge($1) } }
    }
}

/// Proof that the checker can fail: each deliberately broken variant of the protocol must be caught
/// within the same budget as the sweep, and its failing seed must replay to the same violation.
@Suite("Broken variants are caught")
struct BrokenVariantTests {
    /// The variants a sweep of random fault schedules finds. The one left out needs a schedule
    /// too precise for random faults to hit often (a lost `begun`, an inquiry before the client's
    /// retry, the answer lost on the way): a scripted story catches it below.
    static let sweepCatches = ProtocolVariant.broken.filter { $0 != .coordinatorAnswersUnknownWithoutRecording }

    @Test(arguments: sweepCatches)
    func caught(_ variant: ProtocolVariant) throws {
        var found: SimulationReport?
        for seed in UInt64(1)...1_000 {
            let report = Simulation(seed: seed, variant: variant).run()
            if !report.passed {
                found = report
                break
            }
        }
        let failure = try #require(found, "\(variant) ran 1,000 seeds without a violation")
        let replay = Simulation(seed: failure.seed, variant: variant).run()
        #expect(replay.violations == failure.violations)
        #expect(replay.steps == failure.steps)
    }

    @Test("an inquiry about an unknown id answered without recording the abort lets a resubmission commit it")
    func presumedAbortWithoutRecord() throws {
        let correct = try #require(presumedAbortStory(.correct))
        #expect(correct.violations.isEmpty, "\(correct.violations)")
        #expect(correct.reported == .aborted, "the resubmission is answered from the recorded abort")
        let broken = try #require(presumedAbortStory(.coordinatorAnswersUnknownWithoutRecording))
        #expect(broken.violations.contains { $0.contains("after an inquiry about it was answered \"aborted\"") }, "\(broken.violations)")
    }

    @Test("in a cluster, an inquiry that reaches a coordinator which never saw the id records the abort before answering, so a client that fails over to it hears aborted")
    func clusterPresumedAbortWithoutRecord() throws {
        let correct = clusterPresumedAbortStory(.correct)
        #expect(correct.violations.isEmpty, "\(correct.violations)")
        #expect(correct.reported == .aborted, "the resubmission at C1 is answered from the recorded abort")
        #expect(correct.answeredByC1, "the inquiry fell back to C1")
        let broken = clusterPresumedAbortStory(.coordinatorAnswersUnknownWithoutRecording)
        #expect(broken.violations.contains { $0.contains("after an inquiry about it was answered \"aborted\"") }, "\(broken.violations)")
    }

    /// Two coordinators over one store. C0 sends the prepares and pauses before its lazy `begun`
    /// record is written; a participant's inquiry falls back to C1, which has never seen the id;
    /// its answers are lost, so the participants stay prepared; the client, unanswered, fails over
    /// to C1 with the same id.
    private func clusterPresumedAbortStory(_ variant: ProtocolVariant) -> (violations: [String], reported: Outcome?, answeredByC1: Bool) {
        var options = SimulationOptions.calm(participants: 2)
        options.coordinatorCount = 2
        options.lease = 60_000_000  // Nobody's lease expires in this story: no takeover.
        options.clientRetryInterval = 1_000_000
        let sim = Simulation(seed: 1, options: options, variant: variant)
        let t = sim.submit("story", votes: "yy")
        sim.run(untilState: { sim.inFlight.contains(.toParticipant(1, .prepare(PrepareRequest(
            txid: t, coordinator: CoordinatorID("C0"), payload: Payload("k=story;v=y"), onePhase: false)))) })
        sim.pause(coordinator: 0, for: 5_000_000)
        let isAbortedAnswer: (TraceEvent) -> Bool = {
            if case .toParticipant(_, .outcome(t, .aborted)) = $0 { true } else { false }
        }
        var answers = 0
        sim.run(untilState: {
            answers += sim.dropInFlight(where: isAbortedAnswer)
            return sim.reported(t) != nil || !sim.violations.isEmpty
        })
        sim.stabilize()
        return (sim.violations, sim.reported(t), answers > 0)
    }

    /// A transaction whose participants prepared while the coordinator crashed and lost its lazy
    /// `begun` record; a participant asks about it before the client, unanswered, submits it again;
    /// the answers are lost on the way, so the participants stay prepared. Returns `nil` when no
    /// seed of the first 64 loses the record.
    private func presumedAbortStory(_ variant: ProtocolVariant) -> (violations: [String], reported: Outcome?)? {
        for seed in UInt64(1)...64 {
            var options = SimulationOptions.calm(participants: 2)
            options.clientRetryInterval = 1_000_000
            let sim = Simulation(seed: seed, options: options, variant: variant)
            let t = sim.submit("story", votes: "yy")
            sim.run(untilState: { sim.recordedState(t, at: 0) == .prepared && sim.recordedState(t, at: 1) == .prepared })
            sim.crash(.coordinator(0))
            guard sim.loggedTransaction(t) == nil else { continue }  // `begun` survived: another seed.
            // Down until P0 asks; its question arrives at the restarted coordinator.
            sim.run(untilState: { sim.inFlight.contains(.toCoordinator(from: 0, .inquire(t))) })
            sim.restart(.coordinator(0))
            let isAbortedAnswer: (TraceEvent) -> Bool = {
                if case .toParticipant(_, .outcome(t, .aborted)) = $0 { true } else { false }
            }
            var answers = 0
            sim.run(untilState: {
                answers += sim.dropInFlight(where: isAbortedAnswer)
                return sim.reported(t) != nil
            })
            guard answers > 0 else { continue }  // The client came back before anyone asked.
            sim.stabilize()
            return (sim.violations, sim.reported(t))
        }
        return nil
    }
}
