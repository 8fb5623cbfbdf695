import ArbiterCore
import Testing

/// Step-by-step checks of the coordinator machine's contract, effect by effect.
@Suite("Coordinator machine")
struct CoordinatorMachineTests {
    let t = try! TxID("t1")
    let p0 = ParticipantID("P0")
    let p1 = ParticipantID("P1")
    var branches: [Branch] { [Branch(participant: p0, payload: Payload("a")), Branch(participant: p1, payload: Payload("b"))] }

    func machine() -> CoordinatorMachine {
        CoordinatorMachine(identity: CoordinatorID("C"), config: CoordinatorConfig(), seed: 1)
    }

    /// Submits a new id: the machine looks it up first; the log knows nothing of it.
    func begin(_ coordinator: inout CoordinatorMachine, _ txid: TxID, branches: [Branch], timeout: Duration?) -> [CoordinatorEffect] {
        #expect(coordinator.handle(.submit(txid, branches: branches, timeout: timeout)) == [.lookup(txid)])
        return coordinator.handle(.lookedUp(txid, nil))
    }

    func sends(_ effects: [CoordinatorEffect]) -> [(ParticipantID, CoordinatorMessage)] {
        effects.compactMap { if case .send(let to, let message) = $0 { return (to, message) } else { return nil } }
    }

    @Test func submitRecordsLazilyAndPreparesEveryBranch() {
        var coordinator = machine()
        let effects = begin(&coordinator, t, branches: branches, timeout: .seconds(2))
        #expect(effects.first == .write([.begun(t, branches: branches)]))
        #expect(sends(effects).map(\.0) == [p0, p1])
        #expect(sends(effects).allSatisfy { if case .prepare(let request) = $0.1 { !request.onePhase } else { false } })
        #expect(effects.contains(.setTimer(TimerID(.prepareDeadline, t), after: .seconds(2))))
        #expect(!effects.contains { if case .force = $0 { true } else { false } })
    }

    @Test func commitIsSentAndReportedOnlyAfterTheDecisionIsDurable() {
        var coordinator = machine()
        _ = begin(&coordinator, t, branches: branches, timeout: nil)
        _ = coordinator.handle(.received(from: p0, .vote(t, .yes)))
        let decided = coordinator.handle(.received(from: p1, .vote(t, .yes)))
        #expect(decided.contains(.force([.decided(t, .committed, notify: [p0, p1], reason: nil)])))
        #expect(sends(decided).isEmpty)
        #expect(!decided.contains { if case .report = $0 { true } else { false } })

        // Not durable yet: an inquiry must not learn the commit.
        #expect(coordinator.handle(.received(from: p0, .inquire(t))) == [.send(p0, .outcome(t, .pending))])

        let durable = coordinator.handle(.forced(t))
        #expect(durable.first == .report(t, .committed, reason: nil))
        #expect(sends(durable).map(\.1) == [.commit(t), .commit(t)])
        #expect(coordinator.handle(.received(from: p0, .inquire(t))) == [.send(p0, .outcome(t, .committed))])

        _ = coordinator.handle(.received(from: p0, .acknowledge(t, .committed)))
        let ended = coordinator.handle(.received(from: p1, .acknowledge(t, .committed)))
        #expect(ended.contains(.write([.ended(t)])))
        #expect(ended.contains(.complete(t, .committed)))
        #expect(coordinator.phase(of: t) == nil)
        // Once forgotten, an inquiry is answered from the log.
        #expect(coordinator.handle(.received(from: p0, .inquire(t))) == [.lookup(t)])
        let logged = LoggedTransaction(branches: branches, outcome: .committed, reason: nil, ended: true)
        #expect(coordinator.handle(.lookedUp(t, logged)) == [.send(p0, .outcome(t, .committed))])
    }

    @Test("an operator's retry resends the decision now to those that owe an acknowledgement, without advancing the backoff")
    func operatorRetryResendsNow() {
        var coordinator = machine()
        _ = begin(&coordinator, t, branches: branches, timeout: nil)
        // Undecided: nothing to resend, nothing owed.
        #expect(coordinator.handle(.retryPhaseTwoNow(t)).isEmpty)
        #expect(coordinator.owingAcknowledgement(t) == nil)
        _ = coordinator.handle(.received(from: p0, .vote(t, .yes)))
        _ = coordinator.handle(.received(from: p1, .vote(t, .yes)))
        // Deciding (the decision not yet durable): nothing may be sent.
        #expect(coordinator.handle(.retryPhaseTwoNow(t)).isEmpty)
        _ = coordinator.handle(.forced(t))
        _ = coordinator.handle(.received(from: p0, .acknowledge(t, .committed)))
        #expect(coordinator.owingAcknowledgement(t) == [p1])
        #expect(coordinator.owedAcknowledgementCounts() == [p1: 1])

        // The timer's resend advances the attempt (to 1: up to 2 × initial); the operator's do
        // not: three of them in a row still schedule the next timed resend within attempt 1's
        // delay, where advancing would have reached attempt 4 (up to 16 × initial).
        #expect(sends(coordinator.handle(.timerFired(TimerID(.phaseTwoRetry, t)))).map(\.0) == [p1])
        for _ in 0..<3 {
            let retried = coordinator.handle(.retryPhaseTwoNow(t))
            #expect(sends(retried).map(\.0) == [p1] && sends(retried).map(\.1) == [.commit(t)])
            let delays = retried.compactMap { if case .setTimer(TimerID(.phaseTwoRetry, t), let delay) = $0 { delay } else { nil } }
            #expect(delays.count == 1 && delays[0] <= CoordinatorConfig().phaseTwoRetry.initial * 2)
        }
        #expect(coordinator.phase(of: t) == .committing)

        _ = coordinator.handle(.received(from: p1, .acknowledge(t, .committed)))
        // Ended: nothing owed, nothing resent.
        #expect(coordinator.handle(.retryPhaseTwoNow(t)).isEmpty)
        #expect(coordinator.owingAcknowledgement(t) == nil)
    }

    @Test func aNoVoteAbortsWithoutForcingAndSparesTheNoVoter() {
        var coordinator = machine()
        _ = begin(&coordinator, t, branches: branches, timeout: nil)
        let effects = coordinator.handle(.received(from: p1, .vote(t, .no(reason: "insufficient funds"))))
        #expect(!effects.contains { if case .force = $0 { true } else { false } })
        #expect(effects.contains { if case .report(t, .aborted, let reason?) = $0 { reason.contains("insufficient funds") } else { false } })
        #expect(sends(effects).map(\.0) == [p0])
        // A late yes changes nothing.
        #expect(sends(coordinator.handle(.received(from: p0, .vote(t, .yes)))).isEmpty)
    }

    @Test func theDeadlineAbortsAndNamesTheSilentParticipants() {
        var coordinator = machine()
        _ = begin(&coordinator, t, branches: branches, timeout: nil)
        _ = coordinator.handle(.received(from: p0, .vote(t, .yes)))
        let effects = coordinator.handle(.timerFired(TimerID(.prepareDeadline, t)))
        #expect(effects.contains { if case .report(t, .aborted, let reason?) = $0 { reason.contains("P1") } else { false } })
        #expect(Set(sends(effects).map(\.0)) == [p0, p1])
    }

    @Test func readOnlyVotersLeavePhaseTwo() {
        var coordinator = machine()
        _ = begin(&coordinator, t, branches: branches, timeout: nil)
        _ = coordinator.handle(.received(from: p0, .vote(t, .readOnly)))
        let effects = coordinator.handle(.received(from: p1, .vote(t, .yes)))
        #expect(effects.contains(.force([.decided(t, .committed, notify: [p1], reason: nil)])))
        #expect(sends(coordinator.handle(.forced(t))).map(\.0) == [p1])
    }

    @Test func allReadOnlyCommitsWithNothingForced() {
        var coordinator = machine()
        _ = begin(&coordinator, t, branches: branches, timeout: nil)
        _ = coordinator.handle(.received(from: p0, .vote(t, .readOnly)))
        let effects = coordinator.handle(.received(from: p1, .vote(t, .readOnly)))
        #expect(!effects.contains { if case .force = $0 { true } else { false } })
        #expect(effects.contains(.report(t, .committed, reason: nil)))
        #expect(coordinator.phase(of: t) == nil)
    }

    @Test func aSingleBranchCommitsInOnePhase() {
        var coordinator = machine()
        let effects = begin(&coordinator, t, branches: [branches[0]], timeout: nil)
        #expect(sends(effects).allSatisfy { if case .prepare(let request) = $0.1 { request.onePhase } else { false } })
        let outcome = coordinator.handle(.received(from: p0, .onePhaseOutcome(t, .committed)))
        #expect(outcome.contains(.report(t, .committed, reason: nil)))
        #expect(!outcome.contains { if case .force = $0 { true } else { false } })
    }

    @Test func aOnePhaseTimeoutAsksInsteadOfPresumingAbort() {
        var coordinator = machine()
        _ = begin(&coordinator, t, branches: [branches[0]], timeout: nil)
        let asked = coordinator.handle(.timerFired(TimerID(.prepareDeadline, t)))
        #expect(sends(asked).map(\.1) == [.abort(t)])
        #expect(!asked.contains { if case .report = $0 { true } else { false } })
        // The participant had committed alone: that is the outcome.
        let learned = coordinator.handle(.received(from: p0, .acknowledge(t, .committed)))
        #expect(learned.contains(.report(t, .committed, reason: nil)))
    }

    @Test func resubmissionIsIdempotentAndAConflictingOneIsRejected() {
        var coordinator = machine()
        _ = begin(&coordinator, t, branches: branches, timeout: nil)
        #expect(coordinator.handle(.submit(t, branches: branches, timeout: nil)).isEmpty)
        #expect(coordinator.handle(.submit(t, branches: [branches[1]], timeout: nil, call: CallID(7))) == [.reject(CallID(7), t, .idInUse)])
        _ = coordinator.handle(.received(from: p1, .vote(t, .no(reason: "x"))))
        #expect(coordinator.handle(.submit(t, branches: branches, timeout: nil)).contains {
            if case .report(t, .aborted, _) = $0 { true } else { false }
        })
    }

    @Test("a resubmission of a transaction that ended is answered from the log, not run again")
    func resubmissionAfterTheEndIsAnsweredFromTheLog() {
        var coordinator = machine()
        let logged = LoggedTransaction(branches: branches, outcome: .committed, reason: nil, ended: true)
        #expect(coordinator.handle(.submit(t, branches: branches, timeout: nil)) == [.lookup(t)])
        #expect(coordinator.handle(.lookedUp(t, logged)) == [.replay(t, .committed, reason: nil)])
        #expect(coordinator.activeCount == 0)
        // Other branches under the same id: refused.
        _ = coordinator.handle(.submit(t, branches: [branches[0]], timeout: nil, call: CallID(3)))
        #expect(coordinator.handle(.lookedUp(t, logged)) == [.reject(CallID(3), t, .idInUse)])
    }

    @Test("requests about an id wait for its lookup and are served in order")
    func requestsAboutOneIdAreServedInOrder() {
        var coordinator = machine()
        #expect(coordinator.handle(.submit(t, branches: branches, timeout: nil)) == [.lookup(t)])
        // The same id again, and an inquiry: parked behind the lookup, no second one.
        #expect(coordinator.handle(.submit(t, branches: branches, timeout: nil)).isEmpty)
        #expect(coordinator.handle(.received(from: p0, .inquire(t))).isEmpty)
        let started = coordinator.handle(.lookedUp(t, nil))
        #expect(started.first == .write([.begun(t, branches: branches)]))
        #expect(sends(started).filter { if case .prepare = $0.1 { true } else { false } }.count == 2, "started once")
        #expect(sends(started).contains { $0 == (p0, .outcome(t, .pending)) }, "the inquiry sees it running")
        #expect(coordinator.parkedCount == 0)
    }

    @Test("an inquiry about an id nobody knows is answered aborted only once the abort is recorded")
    func anUnknownIdIsPresumedAbortedDurably() {
        var coordinator = machine()
        #expect(coordinator.handle(.inquiry(t, call: CallID(1))) == [.lookup(t)])
        let presumed = coordinator.handle(.lookedUp(t, nil))
        #expect(presumed == [.force([
            .decided(t, .aborted, notify: [], reason: CoordinatorMachine.presumedAbortReason), .ended(t),
        ])])
        // Until the record is durable, a submit of the id waits too.
        #expect(coordinator.handle(.submit(t, branches: branches, timeout: nil, call: CallID(2))).isEmpty)
        let answered = coordinator.handle(.forced(t))
        #expect(answered == [
            .answer(CallID(1), t, .aborted),
            .replay(t, .aborted, reason: CoordinatorMachine.presumedAbortReason),
        ])
        #expect(coordinator.activeCount == 0 && coordinator.parkedCount == 0)
        // Later the log answers: the id stays aborted.
        _ = coordinator.handle(.submit(t, branches: branches, timeout: nil))
        let logged = LoggedTransaction(branches: nil, outcome: .aborted, reason: CoordinatorMachine.presumedAbortReason, ended: true)
        #expect(coordinator.handle(.lookedUp(t, logged)) == [.replay(t, .aborted, reason: CoordinatorMachine.presumedAbortReason)])
        _ = coordinator.handle(.received(from: p1, .inquire(t)))
        #expect(coordinator.handle(.lookedUp(t, logged)) == [.send(p1, .outcome(t, .aborted))])
    }

    @Test func badSubmissionsAreRejectedAndNothingIsRecorded() {
        var coordinator = machine()
        #expect(coordinator.handle(.submit(t, branches: [], timeout: nil)) == [.reject(CallID(0), t, .noBranches)])
        #expect(coordinator.handle(.submit(t, branches: [branches[0], branches[0]], timeout: nil))
            == [.reject(CallID(0), t, .duplicateParticipant(p0))])
        #expect(coordinator.activeCount == 0)
    }

    @Test func recoveryResendsACommitToParticipantsThatHaveNotAcknowledged() {
        var coordinator = machine()
        let effects = coordinator.handle(.recovered([
            .begun(t, branches: branches),
            .decided(t, .committed, notify: [p0, p1], reason: nil),
            .acknowledged(t, p0),
        ]))
        #expect(sends(effects).map(\.0) == [p1])
        #expect(sends(effects).map(\.1) == [.commit(t)])
        #expect(coordinator.phase(of: t) == .committing)
    }

    @Test func recoveryAbortsATransactionThatWasNeverDecided() {
        var coordinator = machine()
        let effects = coordinator.handle(.recovered([.begun(t, branches: branches)]))
        #expect(effects.contains { effect in
            guard case .write(let records) = effect, case .decided(t, .aborted, _, _)? = records.first else { return false }
            return true
        })
        #expect(sends(effects).map(\.1) == [.abort(t), .abort(t)])
    }

    @Test func recoveryIgnoresEndedTransactions() {
        var coordinator = machine()
        let effects = coordinator.handle(.recovered([
            .begun(t, branches: branches), .decided(t, .committed, notify: [p0, p1], reason: nil), .ended(t),
        ]))
        #expect(effects.isEmpty)
        #expect(coordinator.activeCount == 0)
    }

    @Test func phaseTwoRetriesBackOff() {
        var coordinator = machine()
        _ = coordinator.handle(.recovered([.decided(t, .committed, notify: [p0], reason: nil)]))
        var delays: [Duration] = []
        for _ in 0..<8 {
            let effects = coordinator.handle(.timerFired(TimerID(.phaseTwoRetry, t)))
            #expect(sends(effects).map(\.1) == [.commit(t)])
            for case .setTimer(_, let delay) in effects { delays.append(delay) }
        }
        #expect(delays.last! > delays.first!)
        #expect(delays.allSatisfy { $0 <= CoordinatorConfig().phaseTwoRetry.max })
    }

    // MARK: - Fencing (a store shared by several coordinators)

    @Test("a transaction whose records the store refuses is dropped at once: timers cancelled, nothing more sent, late votes change nothing")
    func fencedWhilePreparingIsDisowned() {
        var coordinator = machine()
        _ = begin(&coordinator, t, branches: branches, timeout: nil)
        let effects = coordinator.handle(.fenced(t))
        #expect(effects == [
            .cancelTimer(TimerID(.prepareDeadline, t)), .cancelTimer(TimerID(.phaseTwoRetry, t)), .disowned(t),
        ])
        #expect(coordinator.phase(of: t) == nil)
        #expect(coordinator.handle(.received(from: p0, .vote(t, .yes))).isEmpty)
        #expect(coordinator.handle(.received(from: p1, .vote(t, .yes))).isEmpty)
        #expect(coordinator.handle(.timerFired(TimerID(.prepareDeadline, t))).isEmpty)
    }

    @Test("a commit decision the store refused is never reported or sent")
    func refusedCommitDecisionIsNotRevealed() {
        var coordinator = machine()
        _ = begin(&coordinator, t, branches: branches, timeout: nil)
        _ = coordinator.handle(.received(from: p0, .vote(t, .yes)))
        #expect(coordinator.handle(.received(from: p1, .vote(t, .yes))).contains(.force([.decided(t, .committed, notify: [p0, p1], reason: nil)])))
        let effects = coordinator.handle(.fenced(t))
        #expect(effects.last == .disowned(t))
        #expect(sends(effects).isEmpty)
        #expect(!effects.contains { if case .report = $0 { true } else { false } })
        // A participant that asks is answered from the store, not from memory.
        #expect(coordinator.handle(.received(from: p0, .inquire(t))) == [.lookup(t)])
    }

    @Test("a presumed abort that loses to another coordinator's row looks the id up again and answers from that row")
    func refusedPresumedAbortAsksTheStoreAgain() {
        var coordinator = machine()
        #expect(coordinator.handle(.inquiry(t, call: CallID(7))) == [.lookup(t)])
        #expect(coordinator.handle(.lookedUp(t, nil)) == [.force([
            .decided(t, .aborted, notify: [], reason: CoordinatorMachine.presumedAbortReason), .ended(t),
        ])])
        // Another coordinator's `begun` got there first.
        #expect(coordinator.handle(.fenced(t)) == [.lookup(t)])
        let underway = LoggedTransaction(branches: branches, outcome: nil, reason: nil, ended: false, drivenElsewhere: true)
        #expect(coordinator.handle(.lookedUp(t, underway)) == [.answer(CallID(7), t, .pending)])
        // Later the owner decided: the same question is answered from its decision.
        #expect(coordinator.handle(.inquiry(t, call: CallID(8))) == [.lookup(t)])
        let decided = LoggedTransaction(branches: branches, outcome: .committed, reason: nil, ended: false, drivenElsewhere: true)
        #expect(coordinator.handle(.lookedUp(t, decided)) == [.answer(CallID(8), t, .committed)])
    }

    @Test("a submit or an inquiry about a transaction another coordinator drives and has not decided is answered pending; nothing is recorded")
    func undecidedElsewhereIsPending() {
        var coordinator = machine()
        let underway = LoggedTransaction(branches: branches, outcome: nil, reason: nil, ended: false, drivenElsewhere: true)
        #expect(coordinator.handle(.submit(t, branches: branches, timeout: nil, call: CallID(3))) == [.lookup(t)])
        #expect(coordinator.handle(.received(from: p0, .inquire(t))).isEmpty)  // Parked behind the lookup.
        #expect(coordinator.handle(.lookedUp(t, underway)) == [.underwayElsewhere(CallID(3), t), .send(p0, .outcome(t, .pending))])
        #expect(coordinator.activeCount == 0)
        // Undecided and not driven elsewhere (an attempt of this coordinator that never decided):
        // as good as unknown, so an inquiry records the presumed abort.
        #expect(coordinator.handle(.received(from: p1, .inquire(t))) == [.lookup(t)])
        let lost = LoggedTransaction(branches: branches, outcome: nil, reason: nil, ended: false)
        #expect(coordinator.handle(.lookedUp(t, lost)) == [.force([
            .decided(t, .aborted, notify: [], reason: CoordinatorMachine.presumedAbortReason), .ended(t),
        ])])
    }

    @Test("transactions taken over from a coordinator whose lease expired are resumed from the store's records, replacing what memory held of them")
    func adoptedRecordsReplaceMemory() {
        var coordinator = machine()
        // This coordinator drove t before a pause; meanwhile another took t over and aborted it.
        _ = begin(&coordinator, t, branches: branches, timeout: nil)
        _ = coordinator.handle(.received(from: p0, .vote(t, .yes)))
        let effects = coordinator.handle(.adopted([
            .begun(t, branches: branches), .decided(t, .aborted, notify: [p0, p1], reason: "taken over"), .acknowledged(t, p1),
        ]))
        #expect(effects.prefix(2) == [.cancelTimer(TimerID(.prepareDeadline, t)), .cancelTimer(TimerID(.phaseTwoRetry, t))])
        #expect(sends(effects).map(\.0) == [p0] && sends(effects).map(\.1) == [.abort(t)], "only P0 still owes its acknowledgement")
        #expect(coordinator.phase(of: t) == .aborting)
        // The late yes from P1 changes nothing: the store's decision stands.
        #expect(coordinator.handle(.received(from: p1, .vote(t, .yes))).isEmpty)
        // An undecided one is aborted, as at recovery.
        let u = try! TxID("u1")
        let undecided = coordinator.handle(.adopted([.begun(u, branches: branches)]))
        #expect(undecided.contains { effect in
            guard case .write(let records) = effect, case .decided(u, .aborted, _, _)? = records.first else { return false }
            return true
        })
    }
}
