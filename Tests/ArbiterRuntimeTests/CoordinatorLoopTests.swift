import ArbiterCore
import ArbiterRuntime
import Synchronization
import Testing

/// The coordinator's loop, round by round, over an in-memory log and transport: what one round
/// writes, in how many storage transactions, and in which order it writes, sends and answers. No
/// thread and no clock: every round is driven by hand, so each figure is exact.
@Suite("Coordinator loop rounds")
struct CoordinatorLoopTests {
    let p0 = ParticipantID("P0")
    let p1 = ParticipantID("P1")

    func branches(_ txid: TxID) -> [Branch] {
        [Branch(participant: p0, payload: Payload("a")), Branch(participant: p1, payload: Payload("b"))]
    }

    func ids(_ count: Int, _ prefix: String = "t") -> [TxID] { (0..<count).map { try! TxID("\(prefix)\($0)") } }

    /// A loop over a fresh log and transport that share one journal of what happened, in order.
    func loop(config: CoordinatorConfig = CoordinatorConfig(), hold: Duration = .zero) -> (CoordinatorLoop, MemoryLog, Wire, Journal) {
        let journal = Journal()
        let log = MemoryLog(journal: journal)
        let wire = Wire(journal: journal)
        let loop = CoordinatorLoop(machine: CoordinatorMachine(identity: CoordinatorID("C"), config: config, seed: 1),
                                   store: log, transport: wire)
        loop.phaseTwoHold = hold
        return (loop, log, wire, journal)
    }

    /// One whole round.
    func round(_ loop: CoordinatorLoop, _ inputs: [CoordinatorLoop.Input], at now: Duration = .zero) throws {
        loop.step(inputs, now: now)
        try loop.write()
        loop.advance()
    }

    func submit(_ txid: TxID, _ branches: [Branch], _ journal: Journal, waitMax: Duration = .seconds(60)) -> CoordinatorLoop.Input {
        .submit(txid, branches: branches, timeout: nil, wait: .decision, waitMax: waitMax,
                reply: { result in journal.append("reply \(Self.describe(result))") })
    }

    static func describe(_ result: CoordinatorLoop.SubmitResult) -> String {
        switch result {
        case .outcome(let txid, let outcome, _): "outcome(\(txid), \(outcome.rawValue))"
        case .rejected(let txid, _): "rejected(\(txid))"
        case .pending(let txid): "pending(\(txid))"
        }
    }

    @Test("everything that arrives in one round is written in one storage transaction: one fsync for 200 commit decisions")
    func oneWritePerRound() throws {
        let (loop, log, wire, journal) = loop()
        let txids = ids(200)
        // Round 1: 200 submits. Each new id is looked up after the round's write; the prepares go
        // out in one batch per participant.
        try round(loop, txids.map { submit($0, branches($0), journal) })
        #expect(log.commits.isEmpty, "nothing to write before the lookups")
        #expect(log.lookups == 200)
        #expect(wire.batches.map(\.participant) == [p0, p1])
        #expect(wire.batches.allSatisfy { $0.messages.count == 200 })
        // Round 2 (at once, work left): the 200 lazy `begun` records, one lazy write.
        #expect(loop.hasWork)
        try round(loop, [])
        #expect(log.commits.count == 1 && log.commits[0].forced == false && log.commits[0].records.count == 200)
        // Round 3: every vote arrives together: 200 commit decisions, one forced write, then one
        // batch of commits per participant, then the 200 clients.
        let votes = txids.flatMap { txid in [CoordinatorLoop.Input.received(p0, .vote(txid, .yes)), .received(p1, .vote(txid, .yes))] }
        journal.clear()
        try round(loop, votes)
        #expect(log.commits.count == 2 && log.commits[1].forced && log.commits[1].records.count == 200)
        #expect(wire.batches.suffix(2).allSatisfy { $0.messages.count == 200 && $0.messages.allSatisfy { if case .commit = $0 { true } else { false } } })
        // Durable before visible: the write, then the sends, then the answers.
        let entries = journal.entries
        #expect(entries.first == "write forced 200")
        #expect(entries.dropFirst().prefix(2) == ["send P0 200", "send P1 200"])
        #expect(entries.dropFirst(3).count == 200 && entries.dropFirst(3).allSatisfy { $0.hasPrefix("reply outcome") })
    }

    @Test("a failed write holds the whole round: nothing is sent or answered until the retry succeeds")
    func aFailedWriteHoldsTheRound() throws {
        let (loop, log, wire, journal) = loop()
        let t = try TxID("t")
        try round(loop, [submit(t, branches(t), journal)])
        try round(loop, [])
        let sentBefore = wire.batches.count
        log.failNext = 2
        loop.step([.received(p0, .vote(t, .yes)), .received(p1, .vote(t, .yes))], now: .zero)
        #expect(throws: MemoryLog.Failure.self) { try loop.write() }
        // More arrives meanwhile; the retry writes it with the held round.
        loop.step([], now: .zero)
        #expect(throws: MemoryLog.Failure.self) { try loop.write() }
        #expect(wire.batches.count == sentBefore && !journal.entries.contains { $0.hasPrefix("reply") })
        try loop.write()
        loop.advance()
        #expect(log.commits.last?.forced == true)
        #expect(wire.batches.count == sentBefore + 2, "the commits went out after the write")
        #expect(journal.entries.contains("reply outcome(t, committed)"))
    }

    @Test("time enters as ticks: the prepare deadline aborts, the client's wait runs out")
    func timersAreTicks() throws {
        let (loop, _, wire, journal) = loop(config: CoordinatorConfig(prepareTimeout: .seconds(1)))
        let t = try TxID("t")
        try round(loop, [submit(t, branches(t), journal, waitMax: .seconds(5))])
        #expect(loop.nextDeadline == .seconds(1), "the prepare deadline, first of the two timers")
        try round(loop, [], at: .milliseconds(999))
        #expect(!wire.batches.contains { $0.messages.contains { if case .abort = $0 { true } else { false } } })
        try round(loop, [], at: .seconds(1))
        #expect(wire.batches.suffix(2).allSatisfy { $0.messages == [.abort(t)] })
        #expect(journal.entries.contains { $0.hasPrefix("reply outcome(t, aborted") })

        let late = try TxID("late")
        try round(loop, [submit(late, branches(late), journal, waitMax: .milliseconds(500))], at: .seconds(10))
        try round(loop, [], at: .milliseconds(10_500))
        #expect(journal.entries.contains("reply pending(late)"), "answered pending; the transaction goes on")
    }

    @Test("an id that ended in this very round is looked up after the round's write, so a resubmission is answered, not run again")
    func lookupsFollowTheWrite() throws {
        let (loop, log, wire, journal) = loop()
        let t = try TxID("one")
        let single = [Branch(participant: p0, payload: Payload("a"))]
        try round(loop, [submit(t, single, journal)])
        try round(loop, [])
        let prepares = wire.batches.count
        // The one-phase outcome and a resubmission of the same id arrive in one round.
        try round(loop, [.received(p0, .onePhaseOutcome(t, .committed)), submit(t, single, journal)])
        #expect(log.records.contains(.ended(t)))
        #expect(journal.entries.filter { $0 == "reply outcome(one, committed)" }.count == 2)
        #expect(wire.batches.count == prepares, "not prepared again")
    }

    @Test("an inquiry about an unknown id is answered only after its abort record is forced")
    func presumedAbortIsForcedBeforeTheAnswer() throws {
        let (loop, log, _, journal) = loop()
        let t = try TxID("ghost")
        try round(loop, [.inquiry(t, reply: { journal.append("answer \($0)") })])
        #expect(!journal.entries.contains { $0.hasPrefix("answer") })
        journal.clear()
        #expect(loop.hasWork)
        try round(loop, [])
        #expect(journal.entries == ["write forced 2", "answer aborted"])
        #expect(log.commits.last?.records.first == .decided(t, .aborted, notify: [], reason: CoordinatorMachine.presumedAbortReason))
    }

    @Test("a commit no client waits for waits for the next prepare to its participant, or for the hold to pass")
    func phaseTwoRidesWithTheNextPrepare() throws {
        let (loop, _, wire, journal) = loop(hold: .milliseconds(2))
        let first = try TxID("first")
        let second = try TxID("second")
        try round(loop, [submit(first, branches(first), journal)])
        try round(loop, [])
        try round(loop, [.received(p0, .vote(first, .yes)), .received(p1, .vote(first, .yes))], at: .milliseconds(1))
        #expect(journal.entries.contains("reply outcome(first, committed)"), "the client hears the decision at once")
        #expect(!wire.batches.contains { $0.messages.contains(.commit(first)) }, "the commits are held")
        #expect(loop.nextDeadline == .milliseconds(3), "until the hold passes")
        #expect(!loop.hasWork)
        // The next transaction's prepares take the held commits along: one request each.
        try round(loop, [submit(second, branches(second), journal)], at: .milliseconds(2))
        let last = wire.batches.suffix(2)
        #expect(last.allSatisfy { $0.messages.count == 2 && $0.messages.contains(.commit(first)) })
        // Alone, a held commit goes when the hold has passed.
        try round(loop, [.received(p0, .vote(second, .yes)), .received(p1, .vote(second, .yes))], at: .milliseconds(3))
        #expect(!wire.batches.contains { $0.messages.contains(.commit(second)) })
        try round(loop, [], at: .milliseconds(5))
        #expect(wire.batches.suffix(2).allSatisfy { $0.messages == [.commit(second)] })
    }

    // MARK: - Fencing: a store that another coordinator shares

    func sentAbout(_ txid: TxID, _ wire: Wire) -> [CoordinatorMessage] {
        wire.batches.flatMap(\.messages).filter { $0.txid == txid && { if case .prepare = $0 { false } else { true } }($0) }
    }

    @Test("records the store refuses stop the machine driving that transaction at once; its client hears pending; the round's other transactions go on")
    func refusedRecordsDisownOneTransaction() throws {
        let (loop, log, wire, journal) = loop()
        let (t, u) = (try TxID("t"), try TxID("u"))
        try round(loop, [submit(t, branches(t), journal), submit(u, branches(u), journal)])
        // Another coordinator recorded t's presumed abort before t's `begun` reached the store.
        log.foreign[t] = LoggedTransaction(branches: nil, outcome: .aborted, reason: "presumed", ended: true, drivenElsewhere: false)
        try round(loop, [])
        #expect(journal.entries.contains("reply pending(t)"))
        #expect(loop.machine.phase(of: t) == nil && loop.machine.phase(of: u) == .preparing)
        try round(loop, [.received(p0, .vote(t, .yes)), .received(p1, .vote(t, .yes)),
                         .received(p0, .vote(u, .yes)), .received(p1, .vote(u, .yes))])
        #expect(sentAbout(t, wire).isEmpty, "nothing decided or sent for t")
        #expect(sentAbout(u, wire) == [.commit(u), .commit(u)])
        #expect(journal.entries.contains("reply outcome(u, committed)"))
        // The client asks again: answered from the store.
        try round(loop, [submit(t, branches(t), journal)])
        #expect(journal.entries.contains("reply outcome(t, aborted)"))
    }

    @Test("a commit decision the store refuses (another coordinator took the transaction over) is never sent nor reported")
    func refusedCommitDecisionStaysInvisible() throws {
        let (loop, log, wire, journal) = loop()
        let t = try TxID("t")
        try round(loop, [submit(t, branches(t), journal)])
        try round(loop, [])
        log.foreign[t] = LoggedTransaction(branches: branches(t), outcome: nil, reason: nil, ended: false, drivenElsewhere: true)
        journal.clear()
        try round(loop, [.received(p0, .vote(t, .yes)), .received(p1, .vote(t, .yes))])
        #expect(journal.entries == ["write forced 1", "reply pending(t)"])
        #expect(sentAbout(t, wire).isEmpty)
        // While its new owner has not decided, a resubmission is pending too.
        try round(loop, [submit(t, branches(t), journal)])
        #expect(journal.entries.last == "reply pending(t)")
        #expect(loop.machine.phase(of: t) == nil, "not started again here")
        // Once the owner aborted it, the same question gets the outcome.
        log.foreign[t] = LoggedTransaction(branches: branches(t), outcome: .aborted, reason: "taken over", ended: false, drivenElsewhere: true)
        try round(loop, [submit(t, branches(t), journal)])
        #expect(journal.entries.last == "reply outcome(t, aborted)")
    }

    @Test("an abort decided in a round whose write the store refuses is neither sent nor reported: the round's messages and answers about it are withheld")
    func refusedAbortIsWithheld() throws {
        let (loop, log, wire, journal) = loop(config: CoordinatorConfig(prepareTimeout: .seconds(1)))
        let t = try TxID("t")
        try round(loop, [submit(t, branches(t), journal)])
        try round(loop, [])
        log.foreign[t] = LoggedTransaction(branches: branches(t), outcome: nil, reason: nil, ended: false, drivenElsewhere: true)
        // The deadline decides abort, sends the aborts and reports in the same step as the write.
        try round(loop, [], at: .seconds(1))
        #expect(sentAbout(t, wire).isEmpty)
        #expect(journal.entries.contains("reply pending(t)") && !journal.entries.contains { $0.hasPrefix("reply outcome(t") })
        #expect(!loop.hasWork, "the withheld messages leave nothing behind to send")
    }

    @Test("a presumed abort refused because another coordinator's row got there first is answered from that row, not as aborted")
    func refusedPresumedAbortIsNotAnsweredAborted() throws {
        let (loop, log, _, journal) = loop()
        let t = try TxID("ghost")
        try round(loop, [.inquiry(t, reply: { journal.append("answer \($0)") })])
        log.foreign[t] = LoggedTransaction(branches: branches(t), outcome: nil, reason: nil, ended: false, drivenElsewhere: true)
        try round(loop, [])
        #expect(journal.entries.filter { $0.hasPrefix("answer") } == ["answer pending"])
        #expect(!log.records.contains { if case .decided = $0 { true } else { false } }, "no abort recorded here")
    }
}

/// What happened, in order, across the log, the wire and the replies.
final class Journal: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    func clear() { lines.withLock { $0.removeAll() } }
    var entries: [String] { lines.withLock { $0 } }
}

/// A decision log in memory that can be told to fail its next writes.
final class MemoryLog: DecisionStore {
    struct Failure: Error {}
    let journal: Journal
    private(set) var commits: [(records: [CoordinatorRecord], forced: Bool)] = []
    private(set) var lookups = 0
    var failNext = 0

    init(journal: Journal) { self.journal = journal }

    var records: [CoordinatorRecord] { commits.flatMap(\.records) }

    /// What other coordinators of a cluster hold: records of these transactions are refused
    /// (fencing), and a lookup reads these rows.
    var foreign: [TxID: LoggedTransaction] = [:]

    func commit(_ records: [CoordinatorRecord], forced: Bool) throws -> [TxID] {
        if failNext > 0 {
            failNext -= 1
            throw Failure()
        }
        let applied = records.filter { foreign[$0.txid] == nil }
        commits.append((applied, forced))
        journal.append("write \(forced ? "forced" : "lazy") \(records.count)")
        return Set(records.map(\.txid)).filter { foreign[$0] != nil }.sorted()
    }

    func lookup(_ txids: [TxID]) throws -> [LoggedTransaction?] {
        lookups += txids.count
        return txids.map { txid in foreign[txid] ?? LoggedTransaction(folding: records.filter { $0.txid == txid }) }
    }

    func recover() throws -> [CoordinatorRecord] { [] }
}

/// A transport that keeps every batch.
final class Wire: CoordinatorTransport {
    let journal: Journal
    private(set) var batches: [(participant: ParticipantID, messages: [CoordinatorMessage])] = []

    init(journal: Journal) { self.journal = journal }

    func send(_ messages: [CoordinatorMessage], to participant: ParticipantID) {
        batches.append((participant, messages))
        journal.append("send \(participant) \(messages.count)")
    }
}
