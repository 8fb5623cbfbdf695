import ArbiterCore
import ArbiterRuntime
import Synchronization
import Testing

/// The participant's loop, round by round, over an in-memory store and transport: what one round
/// stages and writes, in how many local transactions, and when it answers. No thread and no
/// clock: every round is driven by hand, so each figure is exact.
@Suite("Participant loop rounds")
struct ParticipantLoopTests {
    let c = CoordinatorID("http://coordinator")

    func ids(_ count: Int, _ prefix: String = "t") -> [TxID] { (0..<count).map { try! TxID("\(prefix)\($0)") } }

    func loop(records: [ParticipantRecord] = [], replyTimeout: Duration = .seconds(10)) -> (ParticipantLoop, MemoryStore, Inquirer, Journal) {
        let journal = Journal()
        let store = MemoryStore(journal: journal, records: records)
        let inquirer = Inquirer(journal: journal)
        let loop = ParticipantLoop(machine: ParticipantMachine(seed: 1), storage: store, transport: inquirer,
                                   settings: .init(replyTimeout: replyTimeout, retry: Backoff(initial: .milliseconds(10), max: .seconds(1), jitter: 0)),
                                   seed: 1)
        return (loop, store, inquirer, journal)
    }

    func round(_ loop: ParticipantLoop, _ inputs: [ParticipantLoop.Input], at now: Duration = .zero) throws {
        loop.step(inputs, now: now)
        try loop.write()
        loop.advance()
    }

    func prepare(_ txid: TxID, vote: String = "y", onePhase: Bool = false) -> CoordinatorMessage {
        .prepare(PrepareRequest(txid: txid, coordinator: c, payload: Payload(vote), onePhase: onePhase))
    }

    func request(_ messages: [CoordinatorMessage], _ journal: Journal) -> ParticipantLoop.Input {
        .request(messages, reply: { replies in journal.append("reply " + replies.map(Self.describe).joined(separator: ", ")) })
    }

    static func describe(_ reply: ParticipantLoop.Reply) -> String {
        switch reply {
        case .answer(.vote(let txid, .yes)): "yes(\(txid))"
        case .answer(.vote(let txid, .no)): "no(\(txid))"
        case .answer(.vote(let txid, .readOnly)): "readOnly(\(txid))"
        case .answer(.acknowledge(let txid, let held)): "ack(\(txid), \(held.rawValue))"
        case .answer(.onePhaseOutcome(let txid, let outcome)): "outcome(\(txid), \(outcome.rawValue))"
        case .answer(.inquire(let txid)): "inquire(\(txid))"
        case .unavailable: "unavailable"
        }
    }

    @Test("everything a round stages is one local transaction: 200 prepares, one forced write, then the votes")
    func oneWritePerRound() throws {
        let (loop, store, _, journal) = loop()
        let txids = ids(200)
        try round(loop, txids.map { request([prepare($0)], journal) })
        #expect(store.commits.count == 1)
        #expect(store.commits[0].forced && store.commits[0].pieces == 200)
        #expect(journal.entries.first == "write forced 200")
        #expect(journal.entries.dropFirst().count == 200 && journal.entries.dropFirst().allSatisfy { $0.hasPrefix("reply yes(") })
        // One batch of commits, one request: one forced write again, one reply with 200 answers.
        journal.clear()
        try round(loop, [request(txids.map { .commit($0) }, journal)])
        #expect(store.commits.count == 2 && store.commits[1].forced && store.commits[1].pieces == 200)
        #expect(journal.entries.count == 2 && journal.entries[1].hasPrefix("reply ack(t0, committed), ack(t1, committed)"))
        #expect(!loop.hasWork)
    }

    @Test("nothing is answered before the round's write returns, and a failed write holds the whole round")
    func aFailedWriteHoldsTheRound() throws {
        let (loop, store, _, journal) = loop()
        let t = try TxID("t")
        store.failNextWrites = 1
        loop.step([request([prepare(t)], journal)], now: .zero)
        #expect(throws: (any Error).self) { try loop.write() }
        #expect(journal.entries == ["write failed"], "nothing answered")
        // The driver backs off, then runs the round again: the same work, now durable, then the vote.
        loop.step([], now: .milliseconds(10))
        try loop.write()
        loop.advance()
        #expect(journal.entries == ["write failed", "write forced 1", "reply yes(t)"])
        #expect(store.recorded[t] == [.prepared(t, coordinator: c, payload: Payload("y"))])
    }

    @Test("an abort that arrives with its prepare is stepped after the stage's write: the prepare hears no, the staged work is discarded")
    func anAbortDuringTheStage() throws {
        let (loop, store, _, journal) = loop()
        let t = try TxID("t")
        try round(loop, [request([prepare(t)], journal), request([.abort(t)], journal)])
        #expect(journal.entries == ["write forced 1", "reply no(t)", "reply ack(t, aborted)"])
        // The discard (a lazy aborted record with the resource's discard) is the next round's write.
        #expect(loop.hasWork)
        try round(loop, [])
        #expect(store.recorded[t]?.last == .aborted(t, heuristic: false))
        #expect(store.commits.last?.forced == false)
    }

    @Test("a commit or an abort for an id memory forgot is answered from the store, after the round's write")
    func forgottenIdsAreLookedUp() throws {
        let t = try TxID("t")
        let old: [ParticipantRecord] = [.prepared(t, coordinator: c, payload: Payload("y")), .committed(t, heuristic: false)]
        let (loop, store, _, journal) = loop(records: old)
        try round(loop, [request([.abort(t)], journal), request([.commit(t)], journal)])
        #expect(store.lookups == 1, "one lookup; the second message waited behind it")
        #expect(journal.entries == ["reply ack(t, committed)", "reply ack(t, committed)"])
        #expect(store.recorded[t] == old, "no tombstone over the commit")
        // An id the store knows nothing of: the abort's tombstone is forced, then acknowledged.
        let u = try TxID("u")
        journal.clear()
        try round(loop, [request([.abort(u)], journal)])
        #expect(journal.entries.isEmpty)
        try round(loop, [])
        #expect(journal.entries == ["write forced 1", "reply ack(u, aborted)"])
    }

    @Test("a piece that fails alone is retried in a later round; the rest of its round stands")
    func aFailedPieceIsRetried() throws {
        let (loop, store, _, journal) = loop()
        let (t1, t2) = (try TxID("t1"), try TxID("t2"))
        try round(loop, [request([prepare(t1), prepare(t2)], journal)])
        journal.clear()
        store.failingPieces = [t2: 1]
        try round(loop, [request([.commit(t1)], journal), request([.commit(t2)], journal)])
        #expect(journal.entries == ["write forced 2", "reply ack(t1, committed)"])
        #expect(store.recorded[t2]?.last == .prepared(t2, coordinator: c, payload: Payload("y")))
        #expect(loop.nextDeadline == .milliseconds(10), "the retry's backoff")
        try round(loop, [], at: .milliseconds(10))
        #expect(journal.entries.suffix(2) == ["write forced 1", "reply ack(t2, committed)"])
        #expect(store.recorded[t2]?.last == .committed(t2, heuristic: false))
    }

    @Test("a request whose answer is not ready by its deadline hears unavailable then, and the work goes on")
    func replyDeadline() throws {
        let (loop, store, _, journal) = loop(replyTimeout: .seconds(1))
        let t = try TxID("t")
        try round(loop, [request([prepare(t)], journal)])
        store.failingPieces = [t: 100]
        journal.clear()
        try round(loop, [request([.commit(t), .commit(t)], journal)])
        #expect(!journal.entries.contains { $0.hasPrefix("reply") })
        loop.step([], now: .seconds(1))
        #expect(journal.entries.last == "reply unavailable, unavailable", "answered in the step, at once")
        #expect(loop.waiting == 0)
    }

    @Test("a transaction in doubt asks its coordinator, one batch per coordinator, and commits on the answer")
    func inDoubtInquiries() throws {
        let (t1, t2) = (try TxID("t1"), try TxID("t2"))
        let (loop, store, inquirer, journal) = loop(records: [
            .prepared(t1, coordinator: c, payload: Payload("y")), .prepared(t2, coordinator: c, payload: Payload("y")),
        ])
        try loop.recover(now: .zero)
        try round(loop, [])
        #expect(inquirer.asked == [[t1, t2]])
        try round(loop, [.learned(t1, .committed, from: c), .learned(t2, .pending, from: c)])
        #expect(store.recorded[t1]?.last == .committed(t1, heuristic: false))
        #expect(store.recorded[t2]?.last == .prepared(t2, coordinator: c, payload: Payload("y")))
        #expect(journal.entries.last == "write forced 1")
    }

    @Test("an operator's decision is answered once its heuristic record is durable; only a transaction in doubt can be decided")
    func operatorDecision() throws {
        let (loop, store, _, journal) = loop()
        let t = try TxID("t")
        try round(loop, [request([prepare(t)], journal)])
        let results = Mutex<[ParticipantLoop.DecisionResult]>([])
        let decide: (TxID) -> ParticipantLoop.Input = { txid in .decide(txid, .aborted, reply: { result in results.withLock { $0.append(result) } }) }
        loop.step([decide(t)], now: .zero)
        #expect(results.withLock { $0 }.isEmpty)
        try loop.write()
        loop.advance()
        #expect(results.withLock { $0 } == [.decided])
        #expect(store.recorded[t]?.last == .aborted(t, heuristic: true))
        try round(loop, [decide(t), decide(try TxID("unknown"))])
        #expect(results.withLock { $0 } == [.decided, .notInDoubt(.aborted), .notFound])
    }
}

/// A participant store in memory with a toy resource: a payload of `y` votes yes, `n` no, `r`
/// read-only. Can fail whole writes and single pieces.
final class MemoryStore: ParticipantStorage {
    let journal: Journal
    var recorded: [TxID: [ParticipantRecord]] = [:]
    var commits: [(forced: Bool, pieces: Int)] = []
    var lookups = 0
    var failNextWrites = 0
    /// Record pieces of these transactions fail, this many times each.
    var failingPieces: [TxID: Int] = [:]

    init(journal: Journal, records: [ParticipantRecord]) {
        self.journal = journal
        for record in records { recorded[record.txid, default: []].append(record) }
    }

    func commit(_ work: [ParticipantWork], forced: Bool) throws -> [ParticipantWorkResult] {
        if failNextWrites > 0 {
            failNextWrites -= 1
            journal.append("write failed")
            throw StoreFailure()
        }
        let results = work.map { piece -> ParticipantWorkResult in
            switch piece {
            case .stage(let staging):
                if let found = recorded[staging.txid] { return .alreadyRecorded(found) }
                let vote: Vote = switch String(decoding: staging.payload.bytes, as: UTF8.self) {
                case "n": .no(reason: "refused")
                case "r": .readOnly
                default: .yes
                }
                for record in staging.records(for: vote).records { recorded[staging.txid, default: []].append(record) }
                return .staged(vote)
            case .records(let records, _):
                let txid = records[0].txid
                if let left = failingPieces[txid], left > 0 {
                    failingPieces[txid] = left - 1
                    return .failed("injected")
                }
                for record in records { recorded[txid, default: []].append(record) }
                return .written
            }
        }
        commits.append((forced, work.count))
        journal.append("write \(forced ? "forced" : "lazy") \(work.count)")
        return results
    }

    func lookup(_ txids: [TxID]) throws -> [[ParticipantRecord]] {
        lookups += txids.count
        return txids.map { recorded[$0] ?? [] }
    }

    func recover() throws -> [ParticipantRecord] {
        recorded.values.filter { records in
            guard records.count == 1, case .prepared = records[0] else { return false }
            return true
        }.flatMap { $0 }.sorted { $0.txid.rawValue < $1.txid.rawValue }
    }

    func forgetEnded() throws -> Bool { false }

    struct StoreFailure: Error {}
}

final class Inquirer: ParticipantTransport {
    let journal: Journal
    var asked: [[TxID]] = []
    init(journal: Journal) { self.journal = journal }
    func inquire(_ txids: [TxID], of coordinator: CoordinatorID) {
        asked.append(txids)
        journal.append("inquire \(txids.count)")
    }
}
