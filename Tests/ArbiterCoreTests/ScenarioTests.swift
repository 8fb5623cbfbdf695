import ArbiterCore
import ArbiterSimulation
import Testing

/// Failure stories, told step by step on a calm simulated cluster: crash here, drop that, restart,
/// stabilise, and check what every node holds. `stabilize()` also checks every invariant and that
/// nothing is left in doubt or locked.
@Suite("Failure stories")
struct ScenarioTests {
    func cluster(participants: Int = 2) -> Simulation {
        Simulation(seed: 1, options: .calm(participants: participants))
    }

    func isVote(_ event: TraceEvent, from index: Int) -> Bool {
        if case .toCoordinator(index, .vote) = event { return true } else { return false }
    }

    @Test("the coordinator crashes after forcing commit, before sending it: its restart sends it")
    func coordinatorCrashAfterDecision() {
        let sim = cluster()
        let t = sim.submit("transfer-1", votes: "yy")
        sim.run { $0 == .forced(.coordinator(0), t) }
        sim.dropInFlight { if case .toParticipant(_, .commit) = $0 { true } else { false } }
        sim.crash(.coordinator(0))
        #expect(sim.durableDecision(t) == .committed)
        #expect(sim.recordedState(t, at: 0) == .prepared)
        #expect(sim.locks(at: 0)[ "transfer-1"] == t, "a prepared participant keeps its lock")

        sim.restart(.coordinator(0))
        sim.stabilize()
        #expect(sim.violations.isEmpty, "\(sim.violations)")
        #expect(sim.recordedState(t, at: 0) == .committed)
        #expect(sim.recordedState(t, at: 1) == .committed)
        #expect(sim.locks(at: 0).isEmpty && sim.locks(at: 1).isEmpty)
    }

    @Test("the coordinator crashes before deciding: its restart aborts, prepared participants release their locks")
    func coordinatorCrashBeforeDecision() {
        let sim = cluster()
        let t = sim.submit("transfer-2", votes: "yy")
        sim.run { isVote($0, from: 0) }
        sim.crash(.coordinator(0))
        sim.restart(.coordinator(0))
        sim.stabilize()
        #expect(sim.violations.isEmpty, "\(sim.violations)")
        #expect(sim.recordedState(t, at: 0) == .aborted)
        #expect(sim.recordedState(t, at: 1) == .aborted)
        #expect(sim.locks(at: 0).isEmpty && sim.locks(at: 1).isEmpty)
    }

    @Test("a participant crashes right after voting yes: it restarts prepared, asks, and commits")
    func participantCrashAfterVote() {
        let sim = cluster()
        let t = sim.submit("transfer-3", votes: "yy")
        sim.run { isVote($0, from: 1) }
        sim.crash(.participant(1))
        #expect(sim.recordedState(t, at: 1) == .prepared, "the prepared record was forced before the vote")
        sim.run { $0 == .reported(t, .committed) }
        sim.restart(.participant(1))
        #expect(sim.locks(at: 1)["transfer-3"] == t, "the lock survives the restart")
        sim.stabilize()
        #expect(sim.violations.isEmpty, "\(sim.violations)")
        #expect(sim.recordedState(t, at: 1) == .committed)
    }

    @Test("the coordinator is down while a participant is in doubt: it stays prepared and locked until the coordinator returns")
    func inDoubtWhileCoordinatorIsDown() {
        let sim = cluster()
        let t = sim.submit("transfer-4", votes: "yy")
        sim.run { $0 == .forced(.coordinator(0), t) }
        sim.dropInFlight { _ in true }
        sim.crash(.coordinator(0))
        // Several inquiry timers fire and find nobody; the participant must not decide alone.
        for _ in 0..<3 { sim.run { if case .timer(.participant(0), _) = $0 { true } else { false } } }
        #expect(sim.participantState(t, at: 0) == .prepared)
        #expect(sim.locks(at: 0)["transfer-4"] == t)
        sim.restart(.coordinator(0))
        sim.stabilize()
        #expect(sim.violations.isEmpty, "\(sim.violations)")
        #expect(sim.recordedState(t, at: 0) == .committed)
    }

    @Test("an abort overtakes its prepare: the tombstone makes the late prepare vote no")
    func abortOvertakesPrepare() {
        let sim = cluster()
        let t = sim.submit("transfer-5", votes: "yn")
        // Hold back the prepare to P0 for a second, long after P1's no vote has aborted the
        // transaction and the abort has reached P0.
        let isPrepareToP0: (TraceEvent) -> Bool = { if case .toParticipant(0, .prepare) = $0 { true } else { false } }
        sim.run(untilState: { sim.inFlight.contains(where: isPrepareToP0) })
        let held = sim.delayInFlight(by: 1_000_000, where: isPrepareToP0)
        #expect(held == 1)
        sim.run { if case .toParticipant(0, .abort) = $0 { true } else { false } }
        sim.run(untilState: { sim.recordedState(t, at: 0) != nil })
        #expect(sim.recordedState(t, at: 0) == .aborted, "a tombstone")
        #expect(sim.reported(t) == .aborted)
        sim.run { if case .toParticipant(0, .prepare) = $0 { true } else { false } }
        let voteNo: (TraceEvent) -> Bool = { if case .toCoordinator(0, .vote(t, .no)) = $0 { true } else { false } }
        sim.run(untilState: { sim.inFlight.contains(where: voteNo) })
        #expect(sim.inFlight.contains(where: voteNo))
        #expect(sim.participantState(t, at: 0) == .aborted, "the late prepare staged nothing")
        sim.stabilize()
        #expect(sim.violations.isEmpty, "\(sim.violations)")
        #expect(sim.locks(at: 0).isEmpty)
    }

    @Test("a vote is lost: the prepare deadline aborts and the prepared participant is released")
    func lostVote() {
        let sim = cluster()
        let t = sim.submit("transfer-6", votes: "yy")
        sim.run { $0 == .forced(.participant(1), t) }
        sim.dropInFlight { isVote($0, from: 1) }
        sim.run { $0 == .timer(.coordinator(0), TimerID(.prepareDeadline, t)) }
        #expect(sim.reported(t) == .aborted)
        sim.stabilize()
        #expect(sim.violations.isEmpty, "\(sim.violations)")
        #expect(sim.recordedState(t, at: 1) == .aborted)
        #expect(sim.locks(at: 1).isEmpty)
    }

    @Test("one participant: one-phase commit; its answer is lost and the coordinator asks")
    func onePhaseAnswerLost() {
        let sim = cluster(participants: 1)
        let t = sim.submit("deposit-1", votes: "y")
        sim.run { $0 == .forced(.participant(0), t) }
        #expect(sim.recordedState(t, at: 0) == .committed, "prepared and committed in one local transaction")
        sim.dropInFlight { if case .toCoordinator(0, .onePhaseOutcome) = $0 { true } else { false } }
        sim.stabilize()
        #expect(sim.violations.isEmpty, "\(sim.violations)")
        #expect(sim.reported(t) == .committed, "the abort sent to ask got the truth back")
    }

    @Test("conflicting transactions: the second prepare finds the key locked and votes no at once")
    func lockConflict() {
        let sim = cluster()
        let first = sim.submit("a", votes: "yy", key: "alice")
        sim.run { $0 == .forced(.participant(0), first) }
        let second = sim.submit("b", votes: "yy", key: "alice")
        sim.stabilize()
        #expect(sim.violations.isEmpty, "\(sim.violations)")
        #expect(sim.reported(first) == .committed)
        #expect(sim.reported(second) == .aborted)
    }
}
