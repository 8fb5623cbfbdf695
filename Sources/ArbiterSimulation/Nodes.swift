import ArbiterCore
import ArbiterRuntime

/// What a participant's records say about a transaction (the last record wins).
public enum RecordedState: Hashable, Sendable {
    case prepared, committed, aborted
}

/// A simulated coordinator process: the production ``CoordinatorLoop`` (its machine is the
/// memory) over a simulated log of its own (the disk) or, in a cluster, the store the coordinators
/// share, and the simulated network.
struct CoordinatorNode {
    let index: Int
    /// The log of a coordinator alone; `nil` in a cluster.
    let log: SimulatedDecisionStore?
    /// Its connection to the store a cluster shares; `nil` alone.
    let cluster: SimulatedClusterStore?
    var loop: CoordinatorLoop
    /// The transport of the current incarnation; a crash retires it.
    var transport: SimulatedTransport
    /// What arrived since the last round.
    var inbox: [CoordinatorLoop.Input] = []
    var up = true
    var epoch = 0
    var isolated = false
    /// Paused (a stopped process, a long GC): nothing it does or receives happens before then.
    var pausedUntil: SimTime?
    /// A round has written and waits for its fsync before it advances.
    var busy = false
    /// A round is scheduled.
    var roundScheduled = false
    /// When a wake-up for the loop's next timer is scheduled.
    var wakeAt: SimTime?

    init(index: Int, log: SimulatedDecisionStore?, cluster: SimulatedClusterStore?, loop: CoordinatorLoop, transport: SimulatedTransport) {
        self.index = index
        self.log = log
        self.cluster = cluster
        self.loop = loop
        self.transport = transport
    }

    /// The store the loop writes to.
    var store: any DecisionStore { log ?? cluster! }

    /// The decision for `txid` that would survive a crash now (every write to a shared store is).
    func durableDecision(_ txid: TxID) -> Outcome? {
        if let log { return log.decision(txid, durableOnly: true) }
        return cluster!.shared.decision(txid)
    }
}

/// The decision log on a ``SimulatedDisk``: a write is one entry, durable once the simulator has
/// let its fsync's time pass (``sync()``).
final class SimulatedDecisionStore: DecisionStore {
    var disk = SimulatedDisk<CoordinatorRecord>()
    /// Told of a decision that contradicts an earlier one for the same transaction.
    var contradiction: (String) -> Void = { _ in }
    /// Told of every decision written.
    var decided: (TxID, Outcome) -> Void = { _, _ in }

    /// Whether this write fails (a fault the simulator injects).
    var fails: () -> Bool = { false }

    /// The log of the one coordinator: it refuses nothing.
    func commit(_ records: [CoordinatorRecord], forced: Bool) throws -> [TxID] {
        if fails() { throw SimulatedWriteFailure() }
        for record in records {
            if case .decided(let txid, let outcome, _, _) = record,
               let earlier = decision(txid, durableOnly: false), earlier != outcome {
                contradiction("coordinator decided \(txid) \(outcome) after deciding it \(earlier)")
            }
            if case .decided(let txid, let outcome, _, _) = record { decided(txid, outcome) }
        }
        disk.append(records)
        return []
    }

    func lookup(_ txids: [TxID]) throws -> [LoggedTransaction?] {
        txids.map { txid in LoggedTransaction(folding: disk.records.lazy.filter { $0.txid == txid }) }
    }

    func recover() throws -> [CoordinatorRecord] {
        var ended: Set<TxID> = []
        for case .ended(let txid) in disk.records { ended.insert(txid) }
        return disk.records.filter { !ended.contains($0.txid) }
    }

    func decision(_ txid: TxID, durableOnly: Bool) -> Outcome? {
        var outcome: Outcome?
        for entry in disk.entries where entry.durable || !durableOnly {
            for case .decided(txid, let decided, _, _) in entry.records { outcome = decided }
        }
        return outcome
    }
}

/// The coordinator's transport in the simulator: hands each batch to the simulated network, one
/// message at a time (each may be dropped, delayed, duplicated or reordered on its own).
final class SimulatedTransport: CoordinatorTransport {
    private let deliver: ([CoordinatorMessage], ParticipantID) -> Void

    init(deliver: @escaping ([CoordinatorMessage], ParticipantID) -> Void) {
        self.deliver = deliver
    }

    func send(_ messages: [CoordinatorMessage], to participant: ParticipantID) {
        deliver(messages, participant)
    }
}

/// The simulated participant process: the production ``ParticipantLoop`` (its machine is the
/// memory) over a simulated store with a toy resource (the disk) and the simulated network.
struct ParticipantNode {
    let storage: SimulatedParticipantStorage
    var loop: ParticipantLoop
    /// What arrived since the last round.
    var inbox: [ParticipantLoop.Input] = []
    var up = true
    var epoch = 0
    var isolated = false
    /// A round has written and waits for its fsync before it advances.
    var busy = false
    /// A round is scheduled.
    var roundScheduled = false
    /// When a wake-up for the loop's next timer is scheduled.
    var wakeAt: SimTime?

    init(storage: SimulatedParticipantStorage, loop: ParticipantLoop) {
        self.storage = storage
        self.loop = loop
    }
}

/// The participant's store on a ``SimulatedDisk``, with a toy resource: each branch's payload
/// names one key to lock and the vote to give (`k=KEY;v=y|n|r`). A round is one entry (one local
/// transaction), durable once the simulator has let its fsync's time pass (`disk.sync()`).
final class SimulatedParticipantStorage: ParticipantStorage {
    var disk = SimulatedDisk<ParticipantRecord>()
    /// Derived from the records, as the participant library's lock table is written with them.
    private(set) var locks: [String: TxID] = [:]
    private(set) var recorded: [TxID: RecordedState] = [:]
    /// When each ended transaction ended, for the retention sweep.
    private var endedAt: [TxID: SimTime] = [:]
    /// Committed transactions whose records retention has since removed.
    private(set) var forgottenCommits: Set<TxID> = []
    let retention: SimTime
    let clock: () -> SimTime
    /// Told of every record a round writes, in order.
    var wrote: (ParticipantRecord) -> Void = { _ in }
    /// Records this store does not fsync although they must be durable (a broken variant).
    var skipsForcing: (ParticipantRecord) -> Bool = { _ in false }
    /// Whether a round's write fails whole, and whether one piece fails alone (faults the simulator
    /// injects).
    var failsRound: () -> Bool = { false }
    var failsPiece: () -> Bool = { false }
    /// Whether the last round wrote records that must be durable before the loop advances: the
    /// simulator lets the fsync's time pass, then syncs the disk.
    var roundNeedsSync = false

    init(retention: SimTime, clock: @escaping () -> SimTime) {
        self.retention = retention
        self.clock = clock
    }

    func commit(_ work: [ParticipantWork], forced: Bool) throws -> [ParticipantWorkResult] {
        var entry: [ParticipantRecord] = []
        roundNeedsSync = false
        if failsRound() { throw SimulatedWriteFailure() }
        let results = work.map { piece -> ParticipantWorkResult in
            if failsPiece() { return .failed("injected: the piece failed alone") }
            switch piece {
            case .stage(let staging):
                let found = records(of: staging.txid) + entry.filter { $0.txid == staging.txid }
                if !found.isEmpty { return .alreadyRecorded(found) }
                let vote = stage(staging.txid, staging.payload)
                let effects = staging.records(for: vote)
                for record in effects.records {
                    entry.append(record)
                    apply(record)
                    if effects.forced && !skipsForcing(record) { roundNeedsSync = true }
                }
                return .staged(vote)
            case .records(let records, let mustForce):
                for record in records {
                    entry.append(record)
                    apply(record)
                    if mustForce && !skipsForcing(record) { roundNeedsSync = true }
                }
                return .written
            }
        }
        precondition(forced || !roundNeedsSync, "a round that must be durable was written lazily")
        if !entry.isEmpty { disk.append(entry) }
        for record in entry { wrote(record) }
        return results
    }

    func lookup(_ txids: [TxID]) throws -> [[ParticipantRecord]] { txids.map(records(of:)) }

    /// As the participant library does, only the transactions in doubt are read back.
    func recover() throws -> [ParticipantRecord] {
        disk.records.filter { recorded[$0.txid] == .prepared }
    }

    func forgetEnded() throws -> Bool {
        let now = clock()
        for (txid, ended) in endedAt.sorted(by: { $0.key < $1.key }) where ended + retention <= now {
            forget(txid)
        }
        return false
    }

    /// The resource's stage: refuse, stay read-only, or lock the key and vote yes.
    private func stage(_ txid: TxID, _ payload: Payload) -> Vote {
        let (key, vote) = SimulatedResource.parse(payload)
        switch vote {
        case "n": return .no(reason: "the resource refused")
        case "r": return .readOnly
        default:
            if let holder = locks[key], holder != txid { return .no(reason: "key \(key) is locked by \(holder)") }
            return .yes
        }
    }

    /// What the disk holds of `txid`, volatile records included (as a read of SQLite sees them).
    func records(of txid: TxID) -> [ParticipantRecord] {
        disk.records.filter { $0.txid == txid }
    }

    /// Applies a record's effect on the derived state (locks and the per-transaction view).
    private func apply(_ record: ParticipantRecord) {
        switch record {
        case .prepared(let txid, _, let payload):
            locks[SimulatedResource.parse(payload).key] = txid
            recorded[txid] = .prepared
        case .committed(let txid, _):
            release(txid)
            recorded[txid] = .committed
            endedAt[txid] = clock()
        case .aborted(let txid, _):
            release(txid)
            // A commit is never undone: an abort record after it would be a bug the checker sees.
            recorded[txid] = .aborted
            endedAt[txid] = clock()
        }
    }

    private func release(_ txid: TxID) {
        for (key, holder) in locks where holder == txid { locks[key] = nil }
    }

    private func forget(_ txid: TxID) {
        if recorded[txid] == .committed { forgottenCommits.insert(txid) }
        disk.remove { $0.txid == txid }
        recorded[txid] = nil
        endedAt[txid] = nil
        release(txid)
    }

    /// A crash: the disk keeps what was durable and each other entry at random; the derived state
    /// is rebuilt from what is left. Returns how many entries were lost.
    func crash(random: inout SplitMix64) -> Int {
        let lost = disk.crash(random: &random)
        locks = [:]
        recorded = [:]
        endedAt = [:]  // Rebuilt from the records: an end kept by the crash counts from the restart.
        for record in disk.records { apply(record) }
        return lost
    }
}

/// A write the simulator makes fail.
struct SimulatedWriteFailure: Error, CustomStringConvertible {
    var description: String { "injected: the write failed" }
}

/// The participant's transport in the simulator: each inquiry goes out on its own over the
/// simulated network.
final class SimulatedParticipantTransport: ParticipantTransport {
    private let deliver: ([TxID], CoordinatorID) -> Void

    init(deliver: @escaping ([TxID], CoordinatorID) -> Void) {
        self.deliver = deliver
    }

    func inquire(_ txids: [TxID], of coordinator: CoordinatorID) {
        deliver(txids, coordinator)
    }
}

enum SimulatedResource {
    static func parse(_ payload: Payload) -> (key: String, vote: Character) {
        let text = String(decoding: payload.bytes, as: UTF8.self)
        var key = ""
        var vote: Character = "y"
        for field in text.split(separator: ";") {
            if field.hasPrefix("k=") { key = String(field.dropFirst(2)) }
            if field.hasPrefix("v="), let character = field.dropFirst(2).first { vote = character }
        }
        return (key, vote)
    }

    static func intendedVote(_ payload: Payload) -> Character { parse(payload).vote }
}

/// The simulated clients: every transaction they submit and what they were told.
struct ClientState {
    struct Transaction {
        var branches: [Branch]
        var report: Outcome?
        /// The coordinator it submits to; a client fails over to another one of a cluster.
        var coordinator = 0
    }

    var transactions: [TxID: Transaction] = [:]
    /// Submission order, for deterministic iteration.
    var order: [TxID] = []

    mutating func add(_ txid: TxID, branches: [Branch]) {
        precondition(transactions[txid] == nil, "duplicate simulated transaction id \(txid)")
        transactions[txid] = Transaction(branches: branches)
        order.append(txid)
    }

    func isOnePhase(_ txid: TxID) -> Bool { transactions[txid]?.branches.count == 1 }

    /// Whether `participant`'s branch of `txid` votes read-only in a two-phase transaction.
    func isReadOnly(_ txid: TxID, at participant: ParticipantID) -> Bool {
        guard let branches = transactions[txid]?.branches, branches.count > 1,
              let branch = branches.first(where: { $0.participant == participant })
        else { return false }
        return SimulatedResource.intendedVote(branch.payload) == "r"
    }
}
