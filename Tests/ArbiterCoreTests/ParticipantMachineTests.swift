import ArbiterCore
import Testing

/// Step-by-step checks of the participant machine's contract, effect by effect.
@Suite("Participant machine")
struct ParticipantMachineTests {
    let t = try! TxID("t1")
    let c = CoordinatorID("C")
    let payload = Payload("debit 5")

    func prepare(onePhase: Bool = false, payload: Payload? = nil) -> ParticipantEvent {
        .received(from: c, .prepare(PrepareRequest(txid: t, coordinator: c, payload: payload ?? self.payload, onePhase: onePhase)))
    }

    func prepared() -> ParticipantMachine {
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(prepare())
        _ = machine.handle(.staged(t, .yes))
        _ = machine.handle(.forced(t))
        return machine
    }

    @Test func votesYesOnlyAfterThePreparedRecordIsDurable() {
        var machine = ParticipantMachine(seed: 1)
        #expect(machine.handle(prepare()) == [.stage(t, payload: payload, onePhase: false)])
        let staged = machine.handle(.staged(t, .yes))
        #expect(staged == [.force([.prepared(t, coordinator: c, payload: payload)])])
        let forced = machine.handle(.forced(t))
        #expect(forced.first == .send(c, .vote(t, .yes)))
        #expect(forced.contains(.setTimer(TimerID(.inquiry, t), after: ParticipantConfig().inquiryTimeout)))
    }

    @Test func aRepeatedPrepareGetsTheSameAnswer() {
        var machine = prepared()
        #expect(machine.handle(prepare()) == [.send(c, .vote(t, .yes))])
        let conflicting = machine.handle(prepare(payload: Payload("other")))
        #expect(conflicting.count == 1)
        #expect(conflicting.allSatisfy { if case .send(_, .vote(_, .no)) = $0 { true } else { false } })
        #expect(machine.state(of: t) == .prepared)
    }

    @Test func anAbortThatOvertakesItsPrepareLeavesATombstone() {
        var machine = ParticipantMachine(seed: 1)
        // Forced before the acknowledgement: for a one-phase transaction it is the outcome.
        #expect(machine.handle(.received(from: c, .abort(t))) == [.force([.aborted(t, heuristic: false)])])
        #expect(machine.handle(.forced(t)).first == .send(c, .acknowledge(t, .aborted)))
        let late = machine.handle(prepare())
        #expect(late.count == 1)
        #expect(late.allSatisfy { if case .send(_, .vote(_, .no)) = $0 { true } else { false } })
    }

    @Test func aPrepareWhileItsTombstoneIsBeingForcedVotesNoAtOnce() {
        // Under load the coordinator's abort (after another participant's no) can overtake the
        // prepare on a parallel request. Waiting for the tombstone's force would leave the prepare
        // unanswered, and the coordinator's batch that carries it, until a deadline.
        var machine = ParticipantMachine(seed: 1)
        #expect(machine.handle(.received(from: c, .abort(t))) == [.force([.aborted(t, heuristic: false)])])
        let late = machine.handle(prepare())
        #expect(late.count == 1)
        #expect(late.allSatisfy { if case .send(_, .vote(_, .no)) = $0 { true } else { false } })
        #expect(machine.handle(.forced(t)).first == .send(c, .acknowledge(t, .aborted)))
        // A one-phase prepare's answer is the outcome itself: that one still waits for the record.
        var onePhase = ParticipantMachine(seed: 1)
        _ = onePhase.handle(.received(from: c, .abort(t)))
        #expect(onePhase.handle(prepare(onePhase: true)).isEmpty)
        let durable = onePhase.handle(.forced(t))
        #expect(durable.contains(.send(c, .acknowledge(t, .aborted))))
        #expect(durable.contains(.send(c, .onePhaseOutcome(t, .aborted))))
    }

    @Test func anAbortWhileThePreparedRecordIsForcedAnswersThePrepareToo() {
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(prepare())
        _ = machine.handle(.staged(t, .yes))
        let aborted = machine.handle(.received(from: c, .abort(t)))
        #expect(aborted.contains { if case .send(c, .vote(t, .no)) = $0 { true } else { false } })
        #expect(aborted.contains(.send(c, .acknowledge(t, .aborted))))
        #expect(!aborted.contains { if case .send(_, .vote(_, .yes)) = $0 { true } else { false } })
        // The prepared record's force completing later changes nothing and votes nothing.
        #expect(machine.handle(.forced(t)).isEmpty)
        #expect(machine.state(of: t) == .aborted)
    }

    @Test func anAbortDuringStagingAnswersThePrepareToo() {
        // The prepare's request must not wait for a vote that would never come.
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(prepare())
        #expect(machine.handle(.received(from: c, .abort(t))).isEmpty)
        let staged = machine.handle(.staged(t, .yes))
        #expect(staged.contains { if case .send(c, .vote(t, .no)) = $0 { true } else { false } })
        #expect(staged.contains(.force([.aborted(t, heuristic: false)])))
        #expect(!staged.contains { if case .send(_, .acknowledge) = $0 { true } else { false } })
        #expect(machine.handle(.forced(t)).first == .send(c, .acknowledge(t, .aborted)))
        // One phase: the outcome, once the aborted record is durable.
        var onePhase = ParticipantMachine(seed: 1)
        _ = onePhase.handle(prepare(onePhase: true))
        _ = onePhase.handle(.received(from: c, .abort(t)))
        #expect(onePhase.handle(.staged(t, .yes)) == [.force([.aborted(t, heuristic: false)])])
        let durable = onePhase.handle(.forced(t))
        #expect(durable.contains(.send(c, .acknowledge(t, .aborted))))
        #expect(durable.contains(.send(c, .onePhaseOutcome(t, .aborted))))
    }

    @Test func acknowledgesCommitOnlyAfterTheCommittedRecordIsDurable() {
        var machine = prepared()
        let commit = machine.handle(.received(from: c, .commit(t)))
        #expect(commit.contains(.force([.committed(t, heuristic: false)])))
        #expect(!commit.contains { if case .send = $0 { true } else { false } })
        #expect(machine.handle(.forced(t)).first == .send(c, .acknowledge(t, .committed)))
        #expect(machine.handle(.received(from: c, .commit(t))) == [.send(c, .acknowledge(t, .committed))])
        // A decision never changes.
        #expect(machine.handle(.received(from: c, .abort(t))) == [.send(c, .acknowledge(t, .committed))])
        #expect(machine.state(of: t) == .committed)
    }

    @Test func aNoVoteAbortsAtOnce() {
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(prepare())
        let effects = machine.handle(.staged(t, .no(reason: "insufficient funds")))
        #expect(effects.contains(.write([.aborted(t, heuristic: false)])))
        #expect(effects.contains(.send(c, .vote(t, .no(reason: "insufficient funds")))))
    }

    @Test func aOnePhaseRefusalIsDurableBeforeItIsTheOutcome() {
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(prepare(onePhase: true))
        #expect(machine.handle(.staged(t, .no(reason: "insufficient funds"))) == [.force([.aborted(t, heuristic: false)])])
        #expect(machine.handle(.forced(t)).first == .send(c, .onePhaseOutcome(t, .aborted)))
    }

    @Test func onePhaseCommitsDurablyBeforeAnswering() {
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(prepare(onePhase: true))
        #expect(machine.handle(.staged(t, .yes)) == [.force([.committed(t, heuristic: false)])])
        #expect(machine.handle(.forced(t)).first == .send(c, .onePhaseOutcome(t, .committed)))
        #expect(machine.handle(prepare(onePhase: true)) == [.send(c, .onePhaseOutcome(t, .committed))])
    }

    @Test func anAbortThatAsksWhileAOnePhaseCommitIsForcedIsAnsweredOnceItIsDurable() {
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(prepare(onePhase: true))
        _ = machine.handle(.staged(t, .yes))
        // The coordinator's one-phase prepare went unanswered, so it asks with an abort; the
        // committed record is still being forced, so nothing can be said yet (twice: a resend).
        #expect(machine.handle(.received(from: c, .abort(t))).isEmpty)
        #expect(machine.handle(.received(from: c, .abort(t))).isEmpty)
        #expect(machine.state(of: t) == .committing)
        // Durable: the prepare's answer, then the abort's, once each; no abort record.
        let durable = machine.handle(.forced(t))
        let sent = durable.compactMap { effect -> ParticipantMessage? in
            if case .send(_, let message) = effect { message } else { nil }
        }
        #expect(sent == [.onePhaseOutcome(t, .committed), .acknowledge(t, .committed)])
        #expect(!durable.contains { if case .force = $0 { true } else if case .write = $0 { true } else { false } })
        #expect(machine.state(of: t) == .committed)
    }

    @Test func aCommitAndAnAbortDuringTheCommitsForceAreAnsweredWithOneAcknowledgement() {
        var machine = prepared()
        _ = machine.handle(.received(from: c, .commit(t)))
        #expect(machine.handle(.received(from: c, .abort(t))).isEmpty)
        let sent = machine.handle(.forced(t)).compactMap { effect -> ParticipantMessage? in
            if case .send(_, let message) = effect { message } else { nil }
        }
        #expect(sent == [.acknowledge(t, .committed)])
    }

    @Test func anAbortDuringAHeuristicCommitsForceIsAnsweredWithTheCommitAndReported() {
        var machine = prepared()
        _ = machine.handle(.decideHeuristically(t, .committed))
        let asked = machine.handle(.received(from: c, .abort(t)))
        #expect(asked.contains { if case .anomaly(t, _) = $0 { true } else { false } })
        #expect(!asked.contains { if case .send = $0 { true } else { false } })
        #expect(machine.handle(.forced(t)).contains(.send(c, .acknowledge(t, .committed))))
    }

    @Test func inDoubtItAsksAndNeverDecidesAlone() {
        var machine = prepared()
        for _ in 0..<5 {
            let effects = machine.handle(.timerFired(TimerID(.inquiry, t)))
            #expect(effects.first == .send(c, .inquire(t)))
            #expect(machine.handle(.received(from: c, .outcome(t, .pending))).isEmpty)
            #expect(machine.state(of: t) == .prepared)
        }
        let committed = machine.handle(.received(from: c, .outcome(t, .committed)))
        #expect(committed.contains(.force([.committed(t, heuristic: false)])))
    }

    @Test func aStaleInquiryAnswerIsIgnored() {
        var machine = prepared()
        _ = machine.handle(.received(from: c, .commit(t)))
        _ = machine.handle(.forced(t))
        #expect(machine.handle(.received(from: c, .outcome(t, .aborted))).isEmpty)
        #expect(machine.state(of: t) == .committed)
    }

    @Test func restartWithAPreparedRecordAsksAtOnce() {
        var machine = ParticipantMachine(seed: 1)
        let effects = machine.handle(.recovered([.prepared(t, coordinator: c, payload: payload)]))
        #expect(effects == [.setTimer(TimerID(.inquiry, t), after: .zero)])
        #expect(machine.handle(.timerFired(TimerID(.inquiry, t))).first == .send(c, .inquire(t)))
    }

    @Test func heuristicDecisionsAreRecordedAsSuchAndOnlyWhenInDoubt() {
        var idle = ParticipantMachine(seed: 1)
        #expect(idle.handle(.decideHeuristically(t, .committed)).isEmpty)
        var machine = prepared()
        let effects = machine.handle(.decideHeuristically(t, .aborted))
        #expect(effects.contains(.force([.aborted(t, heuristic: true)])))
        #expect(machine.handle(.forced(t)).allSatisfy { if case .send = $0 { false } else { true } })
        let commit = machine.handle(.received(from: c, .commit(t)))
        #expect(commit.contains(.send(c, .acknowledge(t, .aborted))))
        #expect(commit.contains { if case .anomaly = $0 { true } else { false } })
    }

    @Test func memoryForgetsAnEndedTransactionAfterItsMemoryRetentionAndLeavesTheRecords() {
        var machine = ParticipantMachine(config: ParticipantConfig(retention: .seconds(3600), memoryRetention: .seconds(5)), seed: 1)
        _ = machine.handle(prepare())
        _ = machine.handle(.staged(t, .yes))
        _ = machine.handle(.forced(t))
        let aborted = machine.handle(.received(from: c, .abort(t)))
        #expect(aborted.contains(.setTimer(TimerID(.retention, t), after: .seconds(5))))
        // Nothing to write or delete: the store keeps the records until the driver's sweep.
        #expect(machine.handle(.timerFired(TimerID(.retention, t))).isEmpty)
        #expect(machine.state(of: t) == nil)
        #expect(machine.knownCount == 0)
    }

    @Test func theShorterOfTheTwoRetentionsKeepsAnEndedTransactionInMemory() {
        var machine = ParticipantMachine(config: ParticipantConfig(retention: .seconds(2), memoryRetention: .seconds(30)), seed: 1)
        _ = machine.handle(prepare())
        let staged = machine.handle(.staged(t, .no(reason: "refused")))
        #expect(staged.contains(.setTimer(TimerID(.retention, t), after: .seconds(2))))
    }

    /// A machine that has forgotten `t` (memory holds nothing of it), with a late prepare of `t`
    /// handed to the driver to stage.
    func stagingALatePrepare() -> ParticipantMachine {
        var machine = ParticipantMachine(seed: 1)
        #expect(machine.handle(prepare()) == [.stage(t, payload: payload, onePhase: false)])
        return machine
    }

    @Test func aLatePrepareOfAForgottenCommitIsAnsweredFromItsRecordsNotStagedAgain() {
        let records: [ParticipantRecord] = [.prepared(t, coordinator: c, payload: payload), .committed(t, heuristic: false)]
        var machine = stagingALatePrepare()
        let answer = machine.handle(.alreadyRecorded(t, records))
        #expect(answer.contains(.send(c, .vote(t, .yes))))
        #expect(!answer.contains { if case .force = $0 { true } else if case .write = $0 { true } else { false } })
        #expect(machine.state(of: t) == .committed)
        // Kept for the memory retention again, then forgotten.
        #expect(answer.contains(.setTimer(TimerID(.retention, t), after: ParticipantConfig().memoryRetention)))

        var onePhase = ParticipantMachine(seed: 1)
        _ = onePhase.handle(prepare(onePhase: true))
        #expect(onePhase.handle(.alreadyRecorded(t, [.committed(t, heuristic: false)])).contains(.send(c, .onePhaseOutcome(t, .committed))))
    }

    @Test func aLatePrepareOfAForgottenTombstoneVotesNo() {
        var machine = stagingALatePrepare()
        let answer = machine.handle(.alreadyRecorded(t, [.aborted(t, heuristic: false)]))
        #expect(answer.contains { if case .send(c, .vote(t, .no)) = $0 { true } else { false } })
        #expect(machine.state(of: t) == .aborted)
    }

    @Test func anAbortThatCameWhileTheStoreWasReadFollowsTheAnswer() {
        // A one-phase coordinator asks what was decided with an abort; the store says committed.
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(prepare(onePhase: true))
        #expect(machine.handle(.received(from: c, .abort(t))).isEmpty)  // Staging: abort when it reports.
        let answer = machine.handle(.alreadyRecorded(t, [.committed(t, heuristic: false)]))
        #expect(answer.contains(.send(c, .onePhaseOutcome(t, .committed))))
        #expect(answer.contains(.send(c, .acknowledge(t, .committed))))
        #expect(!answer.contains { if case .force = $0 { true } else { false } })
    }

    @Test func aForgottenCommitIsAcknowledgedFromItsRecordsNotAsUnknown() {
        // The driver feeds the stored records before a commit or abort of an id memory forgot.
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(.recovered([.prepared(t, coordinator: c, payload: payload), .committed(t, heuristic: false)]))
        #expect(machine.handle(.received(from: c, .commit(t))) == [.send(c, .acknowledge(t, .committed))])
        // An abort (a one-phase coordinator asking) gets the commit, never a tombstone over it.
        #expect(machine.handle(.received(from: c, .abort(t))) == [.send(c, .acknowledge(t, .committed))])
    }

    @Test func recordsOfATransactionMemoryHoldsAreIgnored() {
        var machine = prepared()
        #expect(machine.handle(.recovered([.aborted(t, heuristic: false)])).isEmpty)
        #expect(machine.state(of: t) == .prepared)
        #expect(machine.handle(.alreadyRecorded(t, [.aborted(t, heuristic: false)])).isEmpty)
        #expect(machine.state(of: t) == .prepared)
    }
}
