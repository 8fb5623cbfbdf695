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

    func staging(onePhase: Bool = false) -> PrepareRequest {
        PrepareRequest(txid: t, coordinator: c, payload: payload, onePhase: onePhase)
    }

    func prepared() -> ParticipantMachine {
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(prepare())
        _ = machine.handle(.staged(t, .yes))
        return machine
    }

    @Test func aStageWritesTheRecordsOfItsVoteInItsOwnTransaction() {
        #expect(staging().records(for: .yes) == .init(
            records: [.prepared(t, coordinator: c, payload: payload)], forced: true, keepsStagedWork: true, applies: false))
        #expect(staging(onePhase: true).records(for: .yes) == .init(
            records: [.committed(t, heuristic: false)], forced: true, keepsStagedWork: true, applies: true))
        #expect(staging(onePhase: true).records(for: .readOnly).records == [.committed(t, heuristic: false)])
        #expect(staging(onePhase: true).records(for: .no(reason: "x")) == .init(
            records: [.aborted(t, heuristic: false)], forced: true, keepsStagedWork: false, applies: false))
        // A two-phase no need not be durable: the coordinator aborts on the vote whatever happens here.
        #expect(staging().records(for: .no(reason: "x")) == .init(
            records: [.aborted(t, heuristic: false)], forced: false, keepsStagedWork: false, applies: false))
        #expect(staging().records(for: .readOnly).records.isEmpty)
    }

    @Test func votesYesOnceTheStageAndItsPreparedRecordAreDurable() {
        var machine = ParticipantMachine(seed: 1)
        #expect(machine.handle(prepare()) == [.stage(staging())])
        #expect(machine.state(of: t) == .staging)
        let staged = machine.handle(.staged(t, .yes))
        #expect(staged.first == .send(c, .vote(t, .yes)))
        #expect(staged.contains(.setTimer(TimerID(.inquiry, t), after: ParticipantConfig().inquiryTimeout)))
        #expect(!staged.contains { if case .force = $0 { true } else if case .write = $0 { true } else { false } })
        #expect(machine.state(of: t) == .prepared)
    }

    @Test func aRepeatedPrepareGetsTheSameAnswer() {
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(prepare())
        #expect(machine.handle(prepare()).isEmpty, "staging: the answer follows the stage's write")
        _ = machine.handle(.staged(t, .yes))
        #expect(machine.handle(prepare()) == [.send(c, .vote(t, .yes))])
        let conflicting = machine.handle(prepare(payload: Payload("other")))
        #expect(conflicting.count == 1)
        #expect(conflicting.allSatisfy { if case .send(_, .vote(_, .no)) = $0 { true } else { false } })
        #expect(machine.state(of: t) == .prepared)
    }

    @Test func anAbortThatOvertakesItsPrepareLeavesATombstone() {
        var machine = ParticipantMachine(seed: 1)
        // Memory holds nothing of it: the store is asked first.
        #expect(machine.handle(.received(from: c, .abort(t))) == [.lookup(t)])
        // Forced before the acknowledgement: for a one-phase transaction it is the outcome.
        #expect(machine.handle(.lookedUp(t, [])) == [.force([.aborted(t, heuristic: false)])])
        #expect(machine.handle(.forced(t)).first == .send(c, .acknowledge(t, .aborted)))
        let late = machine.handle(prepare())
        #expect(late.count == 1)
        #expect(late.allSatisfy { if case .send(_, .vote(_, .no)) = $0 { true } else { false } })
    }

    @Test func messagesAboutAnIdBeingLookedUpWaitForTheAnswerInOrder() {
        var machine = ParticipantMachine(seed: 1)
        #expect(machine.handle(.received(from: c, .abort(t))) == [.lookup(t)])
        // A prepare overtaken by its abort waits behind the lookup instead of staging.
        #expect(machine.handle(prepare()).isEmpty)
        #expect(machine.handle(.received(from: c, .abort(t))).isEmpty)
        let answered = machine.handle(.lookedUp(t, []))
        #expect(answered.first == .force([.aborted(t, heuristic: false)]))
        #expect(answered.contains { if case .send(c, .vote(t, .no)) = $0 { true } else { false } })
        #expect(!answered.contains { if case .stage = $0 { true } else { false } })
        #expect(!answered.contains(.lookup(t)))
    }

    @Test func aPrepareWhileItsTombstoneIsBeingForcedVotesNoAtOnce() {
        // Under load the coordinator's abort (after another participant's no) can overtake the
        // prepare on a parallel request. Waiting for the tombstone's force would leave the prepare
        // unanswered, and the coordinator's batch that carries it, until a deadline.
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(.received(from: c, .abort(t)))
        #expect(machine.handle(.lookedUp(t, [])) == [.force([.aborted(t, heuristic: false)])])
        let late = machine.handle(prepare())
        #expect(late.count == 1)
        #expect(late.allSatisfy { if case .send(_, .vote(_, .no)) = $0 { true } else { false } })
        #expect(machine.handle(.forced(t)).first == .send(c, .acknowledge(t, .aborted)))
        // A one-phase prepare's answer is the outcome itself: that one still waits for the record.
        var onePhase = ParticipantMachine(seed: 1)
        _ = onePhase.handle(.received(from: c, .abort(t)))
        _ = onePhase.handle(.lookedUp(t, []))
        #expect(onePhase.handle(prepare(onePhase: true)).isEmpty)
        let durable = onePhase.handle(.forced(t))
        #expect(durable.contains(.send(c, .acknowledge(t, .aborted))))
        #expect(durable.contains(.send(c, .onePhaseOutcome(t, .aborted))))
    }

    @Test func anAbortDuringTheStageAnswersThePrepareWithANoAndDiscards() {
        // The prepare's request must not wait for a vote that would never come.
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(prepare())
        #expect(machine.handle(.received(from: c, .abort(t))).isEmpty)
        let staged = machine.handle(.staged(t, .yes))
        #expect(staged.contains { if case .send(c, .vote(t, .no)) = $0 { true } else { false } })
        #expect(!staged.contains { if case .send(_, .vote(_, .yes)) = $0 { true } else { false } })
        // The prepared record is durable: the abort discards, as for any prepared transaction.
        #expect(staged.contains(.write([.aborted(t, heuristic: false)])))
        #expect(staged.contains(.send(c, .acknowledge(t, .aborted))))
        #expect(machine.state(of: t) == .aborted)
        // One phase: the stage's record is the outcome, and the abort (a coordinator asking) hears it.
        var onePhase = ParticipantMachine(seed: 1)
        _ = onePhase.handle(prepare(onePhase: true))
        _ = onePhase.handle(.received(from: c, .abort(t)))
        let durable = onePhase.handle(.staged(t, .yes))
        #expect(durable.contains(.send(c, .onePhaseOutcome(t, .committed))))
        #expect(durable.contains(.send(c, .acknowledge(t, .committed))))
        var refused = ParticipantMachine(seed: 1)
        _ = refused.handle(prepare(onePhase: true))
        _ = refused.handle(.received(from: c, .abort(t)))
        let answered = refused.handle(.staged(t, .no(reason: "x")))
        #expect(answered.contains(.send(c, .onePhaseOutcome(t, .aborted))))
        #expect(answered.contains(.send(c, .acknowledge(t, .aborted))))
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

    @Test func aNoVoteIsAnsweredAtOnce() {
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(prepare())
        let effects = machine.handle(.staged(t, .no(reason: "insufficient funds")))
        #expect(effects.first == .send(c, .vote(t, .no(reason: "insufficient funds"))))
        #expect(machine.state(of: t) == .aborted)
    }

    @Test func onePhaseAnswersTheOutcomeItsStageRecorded() {
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(prepare(onePhase: true))
        #expect(machine.handle(.staged(t, .yes)).first == .send(c, .onePhaseOutcome(t, .committed)))
        #expect(machine.handle(prepare(onePhase: true)) == [.send(c, .onePhaseOutcome(t, .committed))])
        var refused = ParticipantMachine(seed: 1)
        _ = refused.handle(prepare(onePhase: true))
        #expect(refused.handle(.staged(t, .no(reason: "insufficient funds"))).first == .send(c, .onePhaseOutcome(t, .aborted)))
        #expect(refused.state(of: t) == .aborted)
    }

    @Test func anAbortThatAsksWhileAOnePhaseStageIsWrittenIsAnsweredWithTheOutcome() {
        var machine = ParticipantMachine(seed: 1)
        _ = machine.handle(prepare(onePhase: true))
        // The coordinator's one-phase prepare went unanswered, so it asks with an abort; the
        // stage is being written, so nothing can be said yet (twice: a resend).
        #expect(machine.handle(.received(from: c, .abort(t))).isEmpty)
        #expect(machine.handle(.received(from: c, .abort(t))).isEmpty)
        #expect(machine.state(of: t) == .staging)
        // Durable: the prepare's answer, then the abort's, once each; no abort record.
        let durable = machine.handle(.staged(t, .yes))
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
        var unknown = ParticipantMachine(seed: 1)
        #expect(unknown.handle(.received(from: c, .outcome(t, .committed))).isEmpty)
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
        #expect(machine.handle(prepare()) == [.stage(staging())])
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
        let records: [ParticipantRecord] = [.prepared(t, coordinator: c, payload: payload), .committed(t, heuristic: false)]
        var machine = ParticipantMachine(seed: 1)
        #expect(machine.handle(.received(from: c, .commit(t))) == [.lookup(t)])
        let answered = machine.handle(.lookedUp(t, records))
        #expect(answered.contains(.send(c, .acknowledge(t, .committed))))
        #expect(!answered.contains { if case .anomaly = $0 { true } else { false } })
        // An abort (a one-phase coordinator asking) gets the commit, never a tombstone over it.
        var asked = ParticipantMachine(seed: 1)
        _ = asked.handle(.received(from: c, .abort(t)))
        let answer = asked.handle(.lookedUp(t, records))
        #expect(answer.contains(.send(c, .acknowledge(t, .committed))))
        #expect(!answer.contains { if case .force = $0 { true } else { false } })
        // A commit the store knows nothing of is acknowledged as unknown, and reported.
        var unknown = ParticipantMachine(seed: 1)
        _ = unknown.handle(.received(from: c, .commit(t)))
        let none = unknown.handle(.lookedUp(t, []))
        #expect(none.contains(.send(c, .acknowledge(t, .unknown))))
        #expect(none.contains { if case .anomaly = $0 { true } else { false } })
    }

    @Test func recordsOfATransactionMemoryHoldsAreIgnored() {
        var machine = prepared()
        #expect(machine.handle(.recovered([.aborted(t, heuristic: false)])).isEmpty)
        #expect(machine.state(of: t) == .prepared)
    }
}
