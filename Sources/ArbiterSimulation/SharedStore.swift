import ArbiterCore
import ArbiterRuntime

/// The decision store a simulated coordinator cluster shares: what a PostgreSQL database holds for
/// it, with the same conditional writes. One row per transaction carries its owner and the owner's
/// epoch; one lease per coordinator name carries its epoch and when it expires, on the store's own
/// clock (the simulator's).
///
/// The rules (``SimulatedClusterStore`` applies them for one coordinator):
/// - a record is written only if its transaction's row is absent or owned by the writer's name
///   and epoch; a decision only if the row has none or the same one;
/// - a lookup says whether another owner drives the transaction (``LoggedTransaction/drivenElsewhere``);
/// - taking a name's lease gives it a new epoch, which fences every older incarnation of the name;
/// - a sweep moves unfinished rows of coordinators whose lease expired to the sweeper.
///
/// The store is a separate database: a coordinator's crash loses none of it. It may be
/// unavailable (a write or a read throws), which the simulator injects.
final class SimulatedSharedStore {
    struct Row {
        var owner: String
        var epoch: Int
        /// Log order: when the row was first written.
        var sequence: Int
        var branches: [Branch]?
        var outcome: Outcome?
        var reason: String?
        var notify: [ParticipantID] = []
        var acknowledged: [ParticipantID] = []
        var ended = false

        /// The records a coordinator that adopts the row resumes from.
        func records(_ txid: TxID) -> [CoordinatorRecord] {
            var records: [CoordinatorRecord] = []
            if let branches { records.append(.begun(txid, branches: branches)) }
            if let outcome { records.append(.decided(txid, outcome, notify: notify, reason: reason)) }
            for participant in acknowledged { records.append(.acknowledged(txid, participant)) }
            if ended { records.append(.ended(txid)) }
            return records
        }
    }

    struct Lease {
        var epoch: Int
        var expires: SimTime
    }

    private(set) var rows: [TxID: Row] = [:]
    private(set) var leases: [String: Lease] = [:]
    private var nextSequence = 0
    var leaseLength: SimTime
    let clock: () -> SimTime
    /// A broken variant: decisions are written whoever owns the row and whatever it holds.
    let skipsFencing: Bool
    /// Told when a decision is written over a different one (two decisions for one transaction).
    var contradiction: (String) -> Void = { _ in }
    /// Told of every decision written.
    var decided: (TxID, Outcome) -> Void = { _, _ in }
    /// Whether this write or read fails: the store is unavailable (a fault the simulator injects).
    var fails: () -> Bool = { false }

    init(leaseLength: SimTime, skipsFencing: Bool, clock: @escaping () -> SimTime) {
        self.leaseLength = leaseLength
        self.skipsFencing = skipsFencing
        self.clock = clock
    }

    /// The decision the store holds for `txid` (every write it took is durable).
    func decision(_ txid: TxID) -> Outcome? { rows[txid]?.outcome }

    /// Takes `name`'s lease with a new epoch.
    func acquireLease(_ name: String) -> Int {
        let epoch = (leases[name]?.epoch ?? 0) + 1
        leases[name] = Lease(epoch: epoch, expires: clock() + leaseLength)
        return epoch
    }

    func renewLease(_ name: String, epoch: Int) -> Bool {
        guard leases[name]?.epoch == epoch else { return false }
        leases[name]!.expires = clock() + leaseLength
        return true
    }

    /// Writes one coordinator's round: each record of a transaction the writer does not own is
    /// skipped, with the rest of that transaction's records; returns those transactions.
    func commit(_ records: [CoordinatorRecord], owner: String, epoch: Int) -> [TxID] {
        var refused: [TxID] = []
        for record in records {
            let txid = record.txid
            if refused.contains(txid) { continue }
            if !apply(record, owner: owner, epoch: epoch) { refused.append(txid) }
        }
        return refused
    }

    private func apply(_ record: CoordinatorRecord, owner: String, epoch: Int) -> Bool {
        let txid = record.txid
        let mine = rows[txid].map { $0.owner == owner && $0.epoch == epoch } ?? true
        if case .decided(_, let outcome, let notify, let reason) = record {
            let earlier = rows[txid]?.outcome
            guard skipsFencing || (mine && (earlier == nil || earlier == outcome)) else { return false }
            if let earlier, earlier != outcome {
                contradiction("the store holds two decisions for \(txid): \(earlier), then \(outcome)")
            }
            var row = rows[txid] ?? newRow(owner: owner, epoch: epoch)
            row.outcome = outcome
            row.notify = notify
            row.reason = reason
            rows[txid] = row
            decided(txid, outcome)
            return true
        }
        guard mine else { return false }
        var row = rows[txid] ?? newRow(owner: owner, epoch: epoch)
        switch record {
        case .begun(_, let branches): row.branches = branches
        case .acknowledged(_, let participant): if !row.acknowledged.contains(participant) { row.acknowledged.append(participant) }
        case .ended: row.ended = true
        case .decided: break
        }
        rows[txid] = row
        return true
    }

    private func newRow(owner: String, epoch: Int) -> Row {
        nextSequence += 1
        return Row(owner: owner, epoch: epoch, sequence: nextSequence)
    }

    func lookup(_ txid: TxID, owner: String, epoch: Int) -> LoggedTransaction? {
        guard let row = rows[txid] else { return nil }
        return LoggedTransaction(
            branches: row.branches, outcome: row.outcome, reason: row.reason, ended: row.ended,
            drivenElsewhere: !row.ended && !(row.owner == owner && row.epoch == epoch))
    }

    /// Moves the unfinished rows that `take` selects (up to `limit`, in log order) to `owner`'s
    /// `epoch` and returns their records.
    func adopt(owner: String, epoch: Int, limit: Int = .max, where take: (Row) -> Bool) -> [CoordinatorRecord] {
        let chosen = rows.filter { !$0.value.ended && take($0.value) }
            .sorted { $0.value.sequence < $1.value.sequence }
            .prefix(limit)
        var records: [CoordinatorRecord] = []
        for (txid, _) in chosen {
            rows[txid]!.owner = owner
            rows[txid]!.epoch = epoch
            records.append(contentsOf: rows[txid]!.records(txid))
        }
        return records
    }

    /// Whether `name`'s lease has expired (or it never had one).
    func leaseExpired(_ name: String) -> Bool { (leases[name]?.expires ?? 0) <= clock() }
}

/// One coordinator's connection to the ``SimulatedSharedStore``: its name and the epoch of the
/// lease it took when it started.
final class SimulatedClusterStore: SharedDecisionStore {
    let shared: SimulatedSharedStore
    let name: String
    private(set) var epoch = 0

    init(shared: SimulatedSharedStore, name: String) {
        self.shared = shared
        self.name = name
    }

    /// A new incarnation starts: it takes the name's lease with a new epoch.
    func open() { epoch = shared.acquireLease(name) }

    func commit(_ records: [CoordinatorRecord], forced: Bool) throws -> [TxID] {
        if shared.fails() { throw SimulatedWriteFailure() }
        return shared.commit(records, owner: name, epoch: epoch)
    }

    func lookup(_ txids: [TxID]) throws -> [LoggedTransaction?] {
        if shared.fails() { throw SimulatedWriteFailure() }
        return txids.map { shared.lookup($0, owner: name, epoch: epoch) }
    }

    /// The name's unfinished transactions, adopted under the new epoch.
    func recover() throws -> [CoordinatorRecord] {
        shared.adopt(owner: name, epoch: epoch) { $0.owner == name }
    }

    func renewLease() throws -> Bool {
        if shared.fails() { throw SimulatedWriteFailure() }
        return shared.renewLease(name, epoch: epoch)
    }

    func claimOrphans(limit: Int) throws -> [CoordinatorRecord] {
        if shared.fails() { throw SimulatedWriteFailure() }
        return shared.adopt(owner: name, epoch: epoch, limit: limit) { $0.owner != name && shared.leaseExpired($0.owner) }
    }
}
