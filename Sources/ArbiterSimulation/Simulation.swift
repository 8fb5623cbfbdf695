public import ArbiterCore
import ArbiterRuntime

/// A deterministic simulation of one coordinator — or a cluster of several over one shared store —
/// and several participants over a faulty network, faulty disks and a simulated clock. Each
/// coordinator is the production ``CoordinatorLoop`` — the same rounds, effects and client handling
/// as the service — over a simulated decision log (or its connection to the shared store, with the
/// cluster's leases, fencing and takeover) and transport; each participant is the production
/// ``ParticipantLoop`` over a simulated store with a toy resource.
///
/// One seed drives everything — the fault mix, the load, every delay, drop and crash — so a run
/// that finds a violation replays exactly from its seed. After every step the invariants of two-phase
/// commit are checked; after the fault phase, faults stop, every node is
/// restarted and reconnected, and every transaction must end (liveness).
///
/// Scripted scenarios use the same type with ``SimulationOptions/calm(participants:)`` and drive it
/// by hand: ``submit(_:votes:)``, ``run(until:)``, ``crash(_:)``, ``restart(_:)``, ``stabilize()``.
public final class Simulation {
    public let seed: UInt64
    public let options: SimulationOptions
    public let variant: ProtocolVariant
    public private(set) var now: SimTime = 0
    /// Events processed so far.
    public private(set) var steps = 0
    public private(set) var faults: [FaultKind: Int] = [:]
    public private(set) var violations: [String] = []

    var random: SplitMix64
    private var queue = ScheduleQueue<Scheduled>()
    private var faultsActive: Bool
    private var trace: TraceBuffer
    /// What the current step recorded, for ``run(until:)``.
    private var stepEvents: [TraceEvent] = []
    private var linkSequence: [Link: (sent: UInt64, delivered: UInt64)] = [:]
    /// Set to crash a node between two effects of its next multi-effect step.
    private var crashMidStepArmed: SimNode?

    static let coordinatorID = CoordinatorID("C")
    static let stepsMax = 5_000_000

    var coordinators: [CoordinatorNode] = []
    /// The store a cluster's coordinators share (`nil` for a coordinator alone).
    var shared: SimulatedSharedStore?
    var participants: [ParticipantNode] = []
    /// Per participant and transaction, how many inquiries went out: each retry asks the next
    /// coordinator of a cluster, starting with the one named in the prepare.
    private var inquiryAttempts: [Int: [TxID: Int]] = [:]
    var client = ClientState()

    /// - Parameters:
    ///   - seed: drives every random choice of the run.
    ///   - options: the run's shape; by default the swarm options the seed picks.
    ///   - variant: the protocol logic to run (a broken variant proves the checker can fail).
    ///   - traceLines: how many of the last events a failure report shows.
    public init(seed: UInt64, options: SimulationOptions? = nil, variant: ProtocolVariant = .correct, traceLines: Int = 60) {
        self.trace = TraceBuffer(capacity: max(traceLines, 1))
        let options = options ?? .swarm(seed: seed)
        var random = SplitMix64(seed: seed)
        self.seed = seed
        self.options = options
        self.variant = variant
        self.faultsActive = options.faultPhase > 0
        let coordinatorSeed = random.next()
        let participantSeeds = (0..<options.participantCount).map { _ in random.next() }
        self.random = random
        for (index, seed) in participantSeeds.enumerated() {
            let storage = SimulatedParticipantStorage(retention: max(options.participant.retention.microseconds, 0)) { [unowned self] in now }
            storage.wrote = { [unowned self] record in participantWrote(record, at: index) }
            storage.skipsForcing = variant.participantSkipsForcing
            storage.failsRound = { [unowned self] in injectFault(.failedWrite, rate: options.failedWriteRate) }
            storage.failsPiece = { [unowned self] in injectFault(.failedPiece, rate: options.failedPieceRate) }
            participants.append(ParticipantNode(storage: storage, loop: makeParticipantLoop(index, storage: storage, epoch: 0, seed: seed)))
        }
        let decided: (TxID, Outcome) -> Void = { [unowned self] txid, outcome in
            if outcome == .committed, answeredAborted.contains(txid) {
                violate("a coordinator decided to commit \(txid) after an inquiry about it was answered \"aborted\"")
            }
        }
        if options.coordinatorCount == 1 {
            let store = SimulatedDecisionStore()
            let (loop, transport) = makeCoordinatorLoop(0, store: store, epoch: 0, seed: coordinatorSeed)
            coordinators = [CoordinatorNode(index: 0, log: store, cluster: nil, loop: loop, transport: transport)]
            store.contradiction = { [unowned self] text in violate(text) }
            store.fails = { [unowned self] in injectFault(.failedWrite, rate: options.failedWriteRate) }
            store.decided = decided
        } else {
            let store = SimulatedSharedStore(leaseLength: options.lease, skipsFencing: variant == .clusterStoreSkipsFencing) { [unowned self] in now }
            store.contradiction = { [unowned self] text in violate(text) }
            store.fails = { [unowned self] in injectFault(.failedWrite, rate: options.failedWriteRate) }
            store.decided = decided
            shared = store
            var seed = coordinatorSeed
            for index in 0..<options.coordinatorCount {
                let connection = SimulatedClusterStore(shared: store, name: Self.coordinatorID(index, of: options.coordinatorCount).rawValue)
                connection.open()
                let (loop, transport) = makeCoordinatorLoop(index, store: connection, epoch: 0, seed: seed)
                coordinators.append(CoordinatorNode(index: index, log: nil, cluster: connection, loop: loop, transport: transport))
                try! loop.recover(now: .zero)  // Takes up its lease duties; the store holds nothing yet.
                scheduleCoordinatorWake(index)
                seed = self.random.next()
            }
        }
        scheduleLoad()
    }

    // MARK: - Running

    /// Runs the whole simulation (load, faults, settling) and the final liveness checks.
    public func run() -> SimulationReport {
        let end = options.faultPhase + options.settlePhase
        while violations.isEmpty, let time = queue.nextTime, time <= end, steps < Self.stepsMax, !onlyLeaseDutiesLeft {
            step()
        }
        if violations.isEmpty {
            if steps >= Self.stepsMax {
                violate("the run did not settle within \(Self.stepsMax) steps")
            } else {
                checkSettled()
            }
        }
        return report()
    }

    /// Processes events until one matches `predicate` (it is processed too). Returns whether one
    /// did before the queue ran dry or a violation stopped the run.
    @discardableResult
    public func run(until predicate: (TraceEvent) -> Bool) -> Bool {
        while violations.isEmpty, !queue.isEmpty, steps < Self.stepsMax {
            stepEvents.removeAll(keepingCapacity: true)
            step()
            if stepEvents.contains(where: predicate) { return true }
        }
        return false
    }

    /// Processes events until `condition` holds (checked before each). Returns whether it did
    /// before the queue ran dry or a violation stopped the run.
    @discardableResult
    public func run(untilState condition: () -> Bool) -> Bool {
        while violations.isEmpty, steps < Self.stepsMax {
            if condition() { return true }
            guard !queue.isEmpty else { return false }
            step()
        }
        return false
    }

    /// What coordinator 0's log (or the shared store) holds of `txid`, durable or not (`nil`: nothing).
    public func loggedTransaction(_ txid: TxID) -> LoggedTransaction? {
        if let shared { return shared.lookup(txid, owner: "", epoch: 0) }
        return try! coordinators[0].store.lookup([txid])[0]  // The simulated log never fails a read.
    }

    /// Runs until nothing is left to do within the settle phase, then checks liveness: every
    /// transaction reported, ended at the coordinator, and holding no prepared record or lock.
    public func stabilize() {
        let end = now + options.settlePhase
        while violations.isEmpty, let time = queue.nextTime, time <= end, steps < Self.stepsMax, !onlyLeaseDutiesLeft {
            step()
        }
        if violations.isEmpty { checkSettled() }
    }

    /// A cluster's coordinators renew their leases and sweep for ever: once faults have stopped,
    /// every coordinator is up, idle and drives nothing, and every transaction was reported, what
    /// is left is only that (and participants' cleanup, which no check waits for).
    private var onlyLeaseDutiesLeft: Bool {
        guard shared != nil, !faultsActive, steps % 64 == 0 else { return false }
        for node in coordinators {
            guard node.up, node.pausedUntil == nil, !node.busy, node.inbox.isEmpty, !node.loop.hasWork,
                  node.loop.activeCount == 0 else { return false }
        }
        guard client.order.allSatisfy({ client.transactions[$0]?.report != nil }) else { return false }
        return participants.allSatisfy { node in
            node.up && node.storage.locks.isEmpty && !node.storage.recorded.values.contains(.prepared)
        }
    }

    private func step() {
        if stepEvents.count > 64 { stepEvents.removeAll(keepingCapacity: true) }
        guard let (time, item) = queue.pop() else { return }
        now = max(now, time)
        steps += 1
        perform(item)
    }

    // MARK: - Scripted control

    /// Submits a transaction with one branch per entry of `votes`, to participants 0, 1, …; each
    /// character is the vote that participant's resource will give: `y`, `n` or `r` (read-only).
    /// Every branch locks its own key, so scripted transactions never conflict unless they share a
    /// `key`.
    @discardableResult
    public func submit(_ id: String, votes: String, key: String? = nil) -> TxID {
        let txid = try! TxID(id)
        let branches = votes.enumerated().map { index, vote in
            Branch(participant: Self.participantID(index), payload: Payload("k=\(key ?? id);v=\(vote)"))
        }
        client.add(txid, branches: branches)
        schedule(.submit(txid), after: 0)
        return txid
    }

    /// Crashes `node` now: it loses its memory, its timers, and each record that was not forced
    /// with probability ½.
    public func crash(_ node: SimNode) {
        guard isUp(node) else { return }
        crashNow(node)
    }

    /// Restarts `node` now from the records it kept.
    public func restart(_ node: SimNode) {
        guard !isUp(node) else { return }
        restartNow(node)
    }

    /// Pauses coordinator `index` of a cluster for `duration` microseconds: it does nothing and
    /// hears nothing until then, as a stopped process.
    public func pause(coordinator index: Int, for duration: SimTime) {
        guard coordinators[index].up, coordinators[index].pausedUntil == nil else { return }
        coordinators[index].pausedUntil = now + duration
        record(.paused(.coordinator(index)))
        schedule(.resume(index, epoch: coordinators[index].epoch), after: duration)
    }

    /// Drops the in-flight messages that `predicate` selects; returns how many.
    @discardableResult
    public func dropInFlight(where predicate: (TraceEvent) -> Bool) -> Int {
        queue.removeAll { Self.message($0).map(predicate) ?? false }.count
    }

    /// Holds back the in-flight messages that `predicate` selects by `delay` microseconds more;
    /// returns how many.
    @discardableResult
    public func delayInFlight(by delay: SimTime, where predicate: (TraceEvent) -> Bool) -> Int {
        let held = queue.removeAll { Self.message($0).map(predicate) ?? false }
        for (time, item) in held { queue.schedule(item, at: time + delay) }
        return held.count
    }

    private static func message(_ item: Scheduled) -> TraceEvent? {
        switch item {
        case .toParticipant(let index, let message, _, _): return .toParticipant(index, message)
        case .toCoordinator(let index, let message, _, _): return .toCoordinator(from: index, message)
        default: return nil
        }
    }

    /// The messages in flight, in the order they will arrive.
    public var inFlight: [TraceEvent] { queue.ordered.compactMap(Self.message) }

    /// The last events, oldest first, as readable lines.
    public var recentEvents: [String] { trace.lines }

    /// What the client was told about `txid`, if anything.
    public func reported(_ txid: TxID) -> Outcome? { client.transactions[txid]?.report }

    /// What participant `index` holds in its records for `txid` (`nil`: nothing).
    public func recordedState(_ txid: TxID, at index: Int) -> RecordedState? { participants[index].storage.recorded[txid] }

    /// The participant machine's view of `txid`.
    public func participantState(_ txid: TxID, at index: Int) -> ParticipantState? { participants[index].loop.machine.state(of: txid) }

    /// Coordinator `index`'s view of `txid`.
    public func coordinatorPhase(_ txid: TxID, at index: Int = 0) -> CoordinatorPhase? { coordinators[index].loop.machine.phase(of: txid) }

    /// The keys participant `index` holds locked, with their holders.
    public func locks(at index: Int) -> [String: TxID] { participants[index].storage.locks }

    /// Whether the coordinator's log (or the cluster's store) holds a durable decision for `txid`.
    public func durableDecision(_ txid: TxID) -> Outcome? { coordinators[0].durableDecision(txid) }

    // MARK: - Load and fault schedule

    private func scheduleLoad() {
        for number in 0..<options.transactionCount {
            let txid = try! TxID("s\(seed)-t\(number)")
            let width = Int.random(in: 1...min(3, options.participantCount), using: &random)
            var indices = Array(0..<options.participantCount)
            indices.shuffle(using: &random)
            let branches = indices.prefix(width).sorted().map { index in
                Branch(participant: Self.participantID(index), payload: randomPayload())
            }
            client.add(txid, branches: branches)
            schedule(.submit(txid), after: SimTime.random(in: 0...max(options.submitWindow, 0), using: &random))
        }
        guard faultsActive else { return }
        if options.crashInterval > 0 { schedule(.crash, after: interval(options.crashInterval)) }
        if options.pauseInterval > 0, shared != nil { schedule(.pause, after: interval(options.pauseInterval)) }
        if options.partitionInterval > 0 { schedule(.partition, after: interval(options.partitionInterval)) }
        schedule(.endFaults, after: options.faultPhase)
    }

    private func randomPayload() -> Payload {
        let roll = Double.random(in: 0..<1, using: &random)
        let vote = roll < options.noVoteRate ? "n" : roll < options.noVoteRate + options.readOnlyRate ? "r" : "y"
        return Payload("k=k\(Int.random(in: 0..<options.keyCount, using: &random));v=\(vote)")
    }

    private func interval(_ mean: SimTime) -> SimTime { SimTime.random(in: 1...(2 * mean), using: &random) }

    private func chance(_ probability: Double) -> Bool {
        probability > 0 && Double.random(in: 0..<1, using: &random) < probability
    }

    private func count(_ fault: FaultKind) { faults[fault, default: 0] += 1 }

    // MARK: - Events

    enum Scheduled {
        /// From coordinator `from` to participant `Int`.
        case toParticipant(Int, CoordinatorMessage, from: Int, sequence: UInt64)
        /// From participant `Int` to coordinator `to`.
        case toCoordinator(Int, ParticipantMessage, to: Int, sequence: UInt64)
        case refused(Int, TxID, coordinator: Int, epoch: Int)
        /// Coordinator `Int`'s loop runs a round with what arrived.
        case coordinatorRound(Int, epoch: Int)
        /// The fsync of the coordinator's round is done: the round advances.
        case coordinatorAdvance(Int, epoch: Int)
        /// The coordinator loop's next timer is due.
        case coordinatorWake(Int, epoch: Int)
        /// A cluster coordinator is paused, and resumes.
        case pause
        case resume(Int, epoch: Int)
        /// Participant `index`'s loop runs a round, advances after its fsync, or wakes for a timer.
        case participantRound(Int, epoch: Int)
        case participantAdvance(Int, epoch: Int)
        case participantWake(Int, epoch: Int)
        case submit(TxID)
        case clientCheck(TxID)
        case crash
        case restart(SimNode, epoch: Int)
        case partition
        case heal(SimNode)
        case endFaults
    }

    private func schedule(_ item: Scheduled, after delay: SimTime) {
        queue.schedule(item, at: now + delay)
    }

    private func perform(_ item: Scheduled) {
        switch item {
        case .toParticipant(let index, let message, let from, let sequence):
            guard arrives(from: .coordinator(from), to: .participant(index), sequence: sequence) else { return }
            record(.toParticipant(index, message))
            participantReceived(message, at: index, from: from)
        case .toCoordinator(let index, let message, let to, let sequence):
            if deferredWhilePaused(to, item) { return }
            guard arrives(from: .participant(index), to: .coordinator(to), sequence: sequence) else { return }
            record(.toCoordinator(from: index, message))
            postCoordinator(to, .received(Self.participantID(index), message))
        case .refused(let index, let txid, let c, let epoch):
            guard coordinators[c].up, coordinators[c].epoch == epoch else { return }
            if deferredWhilePaused(c, item) { return }
            record(.refused(index, txid))
            postCoordinator(c, .unreachable(Self.participantID(index), txid, reason: "connection refused"))
        case .coordinatorRound(let c, let epoch):
            guard coordinators[c].up, coordinators[c].epoch == epoch else { return }
            if deferredWhilePaused(c, item) { return }
            coordinators[c].roundScheduled = false
            coordinatorRound(c)
        case .coordinatorAdvance(let c, let epoch):
            guard coordinators[c].up, coordinators[c].epoch == epoch else { return }  // Lost in a crash.
            if deferredWhilePaused(c, item) { return }
            coordinators[c].log?.disk.sync()
            coordinatorAdvance(c)
        case .coordinatorWake(let c, let epoch):
            guard coordinators[c].up, coordinators[c].epoch == epoch else { return }
            if deferredWhilePaused(c, item) { return }
            coordinators[c].wakeAt = nil
            kickCoordinator(c)
        case .pause:
            randomPause()
        case .resume(let c, let epoch):
            guard coordinators[c].up, coordinators[c].epoch == epoch, coordinators[c].pausedUntil != nil else { return }
            coordinators[c].pausedUntil = nil
            record(.resumed(.coordinator(c)))
        case .participantRound(let index, let epoch):
            guard participants[index].up, participants[index].epoch == epoch else { return }
            participants[index].roundScheduled = false
            participantRound(index)
        case .participantAdvance(let index, let epoch):
            guard participants[index].up, participants[index].epoch == epoch else { return }  // Lost in a crash.
            participants[index].storage.disk.sync()
            participantAdvance(index)
        case .participantWake(let index, let epoch):
            guard participants[index].up, participants[index].epoch == epoch else { return }
            participants[index].wakeAt = nil
            kickParticipant(index)
        case .submit(let txid):
            clientSubmit(txid)
        case .clientCheck(let txid):
            clientCheck(txid)
        case .crash:
            randomCrash()
        case .restart(let node, let epoch):
            if !isUp(node), self.epoch(of: node) == epoch { restartNow(node) }
        case .partition:
            randomPartition()
        case .heal(let node):
            setIsolated(node, false)
        case .endFaults:
            endFaults()
        }
    }

    private func record(_ event: TraceEvent) {
        trace.append(event, at: now)
        stepEvents.append(event)
    }

    // MARK: - Network

    private struct Link: Hashable {
        var from: SimNode
        var to: SimNode
    }

    private func send(_ item: Scheduled, from: SimNode, to: SimNode) {
        if faultsActive {
            if isIsolated(from) || isIsolated(to) {
                record(.lost(from: from, to: to, why: "partition"))
                return
            }
            if chance(options.dropRate) {
                count(.drop)
                record(.lost(from: from, to: to, why: "dropped"))
                return
            }
            if case .toParticipant(let index, let message, let c, _) = item, !participants[index].up, chance(options.refuseRate) {
                count(.refuse)
                schedule(.refused(index, message.txid, coordinator: c, epoch: coordinators[c].epoch), after: 100)
                return
            }
        }
        let copies = faultsActive && chance(options.duplicateRate) ? 2 : 1
        if copies == 2 { count(.duplicate) }
        for _ in 0..<copies {
            let link = Link(from: from, to: to)
            let sequence = (linkSequence[link]?.sent ?? 0) + 1
            linkSequence[link, default: (0, 0)].sent = sequence
            var delay = SimTime.random(in: 100...2_000, using: &random)
            if faultsActive && chance(options.reorderRate) { delay += SimTime.random(in: 0...20_000, using: &random) }
            if faultsActive && chance(options.delayRate) {
                count(.delay)
                delay += SimTime.random(in: 100_000...800_000, using: &random)
            }
            queue.schedule(item.withSequence(sequence), at: now + delay)
        }
    }

    /// Whether a message arrives: its receiver must be up and reachable. Counts reordering.
    private func arrives(from: SimNode, to: SimNode, sequence: UInt64) -> Bool {
        guard isUp(to) else {
            record(.lost(from: from, to: to, why: "\(to) is down"))
            return false
        }
        if faultsActive && (isIsolated(from) || isIsolated(to)) {
            record(.lost(from: from, to: to, why: "partition"))
            return false
        }
        let link = Link(from: from, to: to)
        if let delivered = linkSequence[link]?.delivered, sequence < delivered {
            count(.reorder)
        } else {
            linkSequence[link, default: (0, 0)].delivered = sequence
        }
        return true
    }

    // MARK: - Coordinator loops

    /// Gives the loop what its round needs, the way the service's loop thread does: one round at a
    /// time, inputs collected while a round waits for its fsync.
    private func postCoordinator(_ c: Int, _ input: CoordinatorLoop.Input) {
        guard coordinators[c].up else { return }
        coordinators[c].inbox.append(input)
        kickCoordinator(c)
    }

    private func kickCoordinator(_ c: Int) {
        guard coordinators[c].up, !coordinators[c].busy, !coordinators[c].roundScheduled else { return }
        coordinators[c].roundScheduled = true
        schedule(.coordinatorRound(c, epoch: coordinators[c].epoch), after: 0)
    }

    /// A paused coordinator does nothing and hears nothing until it resumes: what would happen
    /// meanwhile happens then. Returns whether `item` was put off.
    private func deferredWhilePaused(_ c: Int, _ item: Scheduled) -> Bool {
        guard let until = coordinators[c].pausedUntil else { return false }
        if now >= until {
            coordinators[c].pausedUntil = nil
            record(.resumed(.coordinator(c)))
            return false
        }
        queue.schedule(item, at: until)
        return true
    }

    /// One round: step what arrived and the due timers, write; a forced write lets the fsync's
    /// time pass before the round advances (inputs meanwhile wait for the next round).
    private func coordinatorRound(_ c: Int) {
        guard !coordinators[c].busy else { return }
        let loop = coordinators[c].loop
        let inputs = coordinators[c].inbox
        coordinators[c].inbox.removeAll(keepingCapacity: true)
        loop.step(inputs, now: .microseconds(now))
        if loop.isFencedOut {
            // A newer incarnation of its name holds its lease: the process stops.
            crashNow(.coordinator(c))
            return
        }
        let forced = loop.roundIsForced
        do {
            try loop.write()
        } catch {
            // Nothing of the round was applied: the loop holds it and writes it again after a
            // backoff, as the service's loop thread does.
            coordinators[c].roundScheduled = true
            schedule(.coordinatorRound(c, epoch: coordinators[c].epoch), after: writeRetryDelay())
            return
        }
        if crashMidStepArmed == .coordinator(c), chance(0.5) {
            // Crash between the round's write and its advance: nothing of the round went out.
            crashMidStepArmed = nil
            count(.crashMidStep)
            crashNow(.coordinator(c))
            return
        }
        if forced && variant != .coordinatorLogSkipsFsync {
            coordinators[c].busy = true
            schedule(.coordinatorAdvance(c, epoch: coordinators[c].epoch), after: fsyncDelay())
        } else {
            coordinatorAdvance(c)
        }
    }

    private func coordinatorAdvance(_ c: Int) {
        coordinators[c].busy = false
        for txid in forcedThisRound[c] ?? [] { record(.forced(.coordinator(c), txid)) }
        forcedThisRound[c] = nil
        let epoch = coordinators[c].epoch
        coordinators[c].loop.advance()
        guard coordinators[c].up, coordinators[c].epoch == epoch else { return }  // Crashed while sending.
        if !coordinators[c].inbox.isEmpty || coordinators[c].loop.hasWork { kickCoordinator(c) }
        scheduleCoordinatorWake(c)
    }

    /// Wakes the loop when its next timer is due.
    private func scheduleCoordinatorWake(_ c: Int) {
        guard let deadline = coordinators[c].loop.nextDeadline else { return }
        // Rounded up to the simulator's microsecond: a wake-up before the deadline finds nothing due.
        let time = max((deadline + .nanoseconds(999)).microseconds, now)
        if let wakeAt = coordinators[c].wakeAt, wakeAt <= time { return }
        coordinators[c].wakeAt = time
        queue.schedule(.coordinatorWake(c, epoch: coordinators[c].epoch), at: time)
    }

    /// The identity of coordinator `index`: `C` alone, `C0`, `C1`, … in a cluster (also its name).
    static func coordinatorID(_ index: Int, of count: Int) -> CoordinatorID {
        count == 1 ? coordinatorID : CoordinatorID("C\(index)")
    }

    static func coordinatorIndex(_ id: CoordinatorID) -> Int { Int(id.rawValue.dropFirst()) ?? 0 }

    /// A fresh incarnation of coordinator `c`'s loop over `store`.
    private func makeCoordinatorLoop(_ c: Int, store: any DecisionStore, epoch: Int, seed: UInt64) -> (CoordinatorLoop, SimulatedTransport) {
        let transport = SimulatedTransport { [unowned self] messages, participant in
            coordinatorSent(messages, to: participant, from: c, epoch: epoch)
        }
        let lease = Duration.microseconds(options.lease)
        let loop = CoordinatorLoop(
            machine: variant.makeCoordinator(identity: Self.coordinatorID(c, of: options.coordinatorCount), config: options.coordinator, seed: seed),
            store: store, transport: transport, observer: loopObserver(c),
            duties: options.coordinatorCount == 1 ? nil : ClusterDuties(leaseRenewal: lease / 3, sweepInterval: lease / 2, claimBatch: 8))
        return (loop, transport)
    }

    /// A batch from the loop: each message goes out on its own. An armed mid-step crash may cut
    /// the round between two batches; what an earlier incarnation still sends is dropped.
    private func coordinatorSent(_ messages: [CoordinatorMessage], to participant: ParticipantID, from c: Int, epoch: Int) {
        guard coordinators[c].up, coordinators[c].epoch == epoch else { return }
        if crashMidStepArmed == .coordinator(c) {
            crashMidStepArmed = nil
            count(.crashMidStep)
            crashNow(.coordinator(c))
            return
        }
        let index = Self.participantIndex(participant)
        for message in messages {
            if case .outcome(let txid, .aborted) = message { answeredAborted.insert(txid) }
            send(.toParticipant(index, message, from: c, sequence: 0), from: .coordinator(c), to: .participant(index))
        }
    }

    /// Transactions whose inquiries a coordinator has answered "aborted": none may ever decide to
    /// commit them afterwards (a participant may act on the answer at any time).
    private var answeredAborted: Set<TxID> = []

    /// Transactions whose forced records each coordinator's current round writes.
    private var forcedThisRound: [Int: [TxID]] = [:]
    private var loopObservers: [Int: LoopObserver] = [:]

    private func loopObserver(_ c: Int) -> LoopObserver {
        if let observer = loopObservers[c] { return observer }
        let observer = LoopObserver(simulation: self, index: c)
        loopObservers[c] = observer
        return observer
    }

    /// What the simulation hears from a coordinator's loop: its forced writes, timers, takeovers
    /// and fencing, for the trace, and its anomalies, which are violations.
    final class LoopObserver: CoordinatorLoopObserver {
        unowned let simulation: Simulation
        let index: Int
        init(simulation: Simulation, index: Int) {
            self.simulation = simulation
            self.index = index
        }
        var node: SimNode { .coordinator(index) }
        func forcing(_ txids: [TxID], writes: Int) { simulation.forcedThisRound[index] = txids }
        func fired(_ timer: TimerID) { simulation.record(.timer(node, timer)) }
        func anomaly(_ txid: TxID, _ text: String) { simulation.violate("\(node) anomaly for \(txid): \(text)") }
        func rejected(_ txid: TxID, _ rejection: SubmitRejection) { simulation.violate("\(node) rejected \(txid): \(rejection)") }
        func claimed(_ txids: [TxID]) { simulation.record(.claimed(node, txids)) }
        func disowned(_ txid: TxID) {
            guard simulation.shared != nil else {
                return simulation.violate("the only coordinator was refused its own records of \(txid)")
            }
            simulation.record(.disowned(node, txid))
        }
    }

    // MARK: - Participant loops

    /// A message from the coordinator: a request for the loop (its answer goes back over the
    /// network), or an inquiry's answer.
    private func participantReceived(_ message: CoordinatorMessage, at index: Int, from c: Int) {
        if case .outcome(let txid, let answer) = message {
            postParticipant(index, .learned(txid, answer, from: Self.coordinatorID(c, of: options.coordinatorCount)))
            return
        }
        let simulation = Unowned(simulation: self)
        let epoch = participants[index].epoch
        postParticipant(index, .request([message], reply: { replies in
            simulation.simulation.participantAnswered(replies, at: index, to: c, epoch: epoch)
        }))
    }

    /// The loop's answers to a request go back to the coordinator (an armed mid-step crash may cut
    /// the round between two of them). An earlier incarnation's answers died with its connections.
    private func participantAnswered(_ replies: [ParticipantLoop.Reply], at index: Int, to c: Int, epoch: Int) {
        guard participants[index].up, participants[index].epoch == epoch else { return }
        if crashMidStepArmed == .participant(index), chance(0.5) {
            crashMidStepArmed = nil
            count(.crashMidStep)
            crashNow(.participant(index))
            return
        }
        for case .answer(let message) in replies {
            send(.toCoordinator(index, message, to: c, sequence: 0), from: .participant(index), to: .coordinator(c))
        }
    }

    private func postParticipant(_ index: Int, _ input: ParticipantLoop.Input) {
        guard participants[index].up else { return }
        participants[index].inbox.append(input)
        kickParticipant(index)
    }

    private func kickParticipant(_ index: Int) {
        guard participants[index].up, !participants[index].busy, !participants[index].roundScheduled else { return }
        participants[index].roundScheduled = true
        schedule(.participantRound(index, epoch: participants[index].epoch), after: 0)
    }

    /// One round, as the coordinator's: step, write, and let the fsync's time pass before the
    /// advance when the round is forced.
    private func participantRound(_ index: Int) {
        guard !participants[index].busy else { return }
        let loop = participants[index].loop
        let inputs = participants[index].inbox
        participants[index].inbox.removeAll(keepingCapacity: true)
        loop.step(inputs, now: .microseconds(now))
        participants[index].storage.roundNeedsSync = false
        do {
            try loop.write()
        } catch {
            participants[index].roundScheduled = true
            schedule(.participantRound(index, epoch: participants[index].epoch), after: writeRetryDelay())
            return
        }
        let forced = participants[index].storage.roundNeedsSync
        if crashMidStepArmed == .participant(index), chance(0.5) {
            // Crash between the round's write and its advance: nothing of the round was answered.
            crashMidStepArmed = nil
            count(.crashMidStep)
            crashNow(.participant(index))
            return
        }
        if forced {
            participants[index].busy = true
            schedule(.participantAdvance(index, epoch: participants[index].epoch), after: fsyncDelay())
        } else {
            participantAdvance(index)
        }
    }

    private func participantAdvance(_ index: Int) {
        participants[index].busy = false
        for txid in participantForcing[index] ?? [] { record(.forced(.participant(index), txid)) }
        participantForcing[index] = nil
        let epoch = participants[index].epoch
        participants[index].loop.advance()
        guard participants[index].up, participants[index].epoch == epoch else { return }  // Crashed while answering.
        if !participants[index].inbox.isEmpty || participants[index].loop.hasWork { kickParticipant(index) }
        scheduleParticipantWake(index)
    }

    private func scheduleParticipantWake(_ index: Int) {
        guard let deadline = participants[index].loop.nextDeadline else { return }
        let time = max((deadline + .nanoseconds(999)).microseconds, now)
        if let wakeAt = participants[index].wakeAt, wakeAt <= time { return }
        participants[index].wakeAt = time
        queue.schedule(.participantWake(index, epoch: participants[index].epoch), at: time)
    }

    /// A fresh incarnation of participant `index`'s loop over `storage`.
    private func makeParticipantLoop(_ index: Int, storage: SimulatedParticipantStorage, epoch: Int, seed: UInt64) -> ParticipantLoop {
        let transport = SimulatedParticipantTransport { [unowned self] txids, coordinator in
            guard participants[index].up, participants[index].epoch == epoch else { return }
            for txid in txids {
                // The coordinator named in the prepare first; each retry asks the next one of a
                // cluster, so that a participant is never stuck behind a dead coordinator.
                let attempt = inquiryAttempts[index, default: [:]][txid, default: 0]
                inquiryAttempts[index, default: [:]][txid] = attempt + 1
                let c = (Self.coordinatorIndex(coordinator) + attempt) % options.coordinatorCount
                send(.toCoordinator(index, .inquire(txid), to: c, sequence: 0), from: .participant(index), to: .coordinator(c))
            }
        }
        let retention = options.participant.retention
        return ParticipantLoop(
            machine: variant.makeParticipant(config: options.participant, seed: seed), storage: storage, transport: transport,
            settings: .init(replyTimeout: options.participantReplyTimeout,
                            sweepInterval: min(max(retention / 4, .milliseconds(10)), .seconds(60))),
            seed: seed ^ 0x9E37_79B9_7F4A_7C15, observer: participantObserver(index))
    }

    /// What the simulation hears from participant loops: their forced writes and timers, for the
    /// trace, and their anomalies, which are violations.
    final class ParticipantObserver: ParticipantLoopObserver {
        unowned let simulation: Simulation
        let index: Int
        init(simulation: Simulation, index: Int) {
            self.simulation = simulation
            self.index = index
        }
        func forcing(_ txids: [TxID]) { simulation.participantForcing[index, default: []].append(contentsOf: txids) }
        func fired(_ timer: TimerID) { simulation.record(.timer(.participant(index), timer)) }
        func anomaly(_ txid: TxID, _ text: String) { simulation.violate("P\(index) anomaly for \(txid): \(text)") }
    }

    private var participantObservers: [Int: ParticipantObserver] = [:]
    /// Transactions whose records each participant's current round makes durable.
    private var participantForcing: [Int: [TxID]] = [:]

    private func participantObserver(_ index: Int) -> ParticipantObserver {
        if let observer = participantObservers[index] { return observer }
        let observer = ParticipantObserver(simulation: self, index: index)
        participantObservers[index] = observer
        return observer
    }

    /// Every record a participant writes: it must never commit what the coordinator has not
    /// durably decided to commit, nor disagree with anyone.
    private func participantWrote(_ record: ParticipantRecord, at index: Int) {
        let txid = record.txid
        if case .committed = record, !client.isOnePhase(txid), coordinators[0].durableDecision(txid) != .committed {
            violate("P\(index) committed \(txid) before the coordinator's commit decision was durable")
        }
        checkAgreement(txid)
    }

    private func fsyncDelay() -> SimTime { SimTime.random(in: 50...2_000, using: &random) }

    /// The backoff before a loop writes a failed round again.
    private func writeRetryDelay() -> SimTime { SimTime.random(in: 1_000...20_000, using: &random) }

    /// Whether to inject a storage fault of `kind` now (only while faults are on); counts it.
    private func injectFault(_ kind: FaultKind, rate: Double) -> Bool {
        guard faultsActive, chance(rate) else { return false }
        count(kind)
        return true
    }

    // MARK: - Crashes and partitions

    private func isUp(_ node: SimNode) -> Bool {
        switch node {
        case .coordinator(let c): return coordinators[c].up
        case .participant(let index): return participants[index].up
        }
    }

    private func epoch(of node: SimNode) -> Int {
        switch node {
        case .coordinator(let c): return coordinators[c].epoch
        case .participant(let index): return participants[index].epoch
        }
    }

    private func isIsolated(_ node: SimNode) -> Bool {
        switch node {
        case .coordinator(let c): return coordinators[c].isolated
        case .participant(let index): return participants[index].isolated
        }
    }

    private func setIsolated(_ node: SimNode, _ isolated: Bool) {
        switch node {
        case .coordinator(let c): coordinators[c].isolated = isolated
        case .participant(let index): participants[index].isolated = isolated
        }
    }

    private var allNodes: [SimNode] { coordinators.indices.map { .coordinator($0) } + participants.indices.map { .participant($0) } }

    /// Pauses a cluster coordinator for one to three leases: its lease expires, the others take
    /// its transactions over, and it resumes believing it still drives them.
    private func randomPause() {
        guard faultsActive else { return }
        schedule(.pause, after: interval(options.pauseInterval))
        let candidates = coordinators.indices.filter { coordinators[$0].up && coordinators[$0].pausedUntil == nil }
        guard !candidates.isEmpty else { return }
        let c = candidates[Int.random(in: 0..<candidates.count, using: &random)]
        count(.pause)
        let until = now + SimTime.random(in: options.lease...(3 * options.lease), using: &random)
        coordinators[c].pausedUntil = until
        record(.paused(.coordinator(c)))
        schedule(.resume(c, epoch: coordinators[c].epoch), after: until - now)
    }

    private func randomCrash() {
        guard faultsActive else { return }
        schedule(.crash, after: interval(options.crashInterval))
        let candidates = allNodes.filter(isUp)
        guard !candidates.isEmpty else { return }
        let node = candidates[Int.random(in: 0..<candidates.count, using: &random)]
        if chance(options.crashMidStepRate) {
            crashMidStepArmed = node  // Crash between two effects of its next step instead.
        } else {
            crashNow(node)
        }
    }

    private func crashNow(_ node: SimNode) {
        let lost: Int
        switch node {
        case .coordinator(let c):
            count(.coordinatorCrash)
            lost = crashCoordinator(c)
        case .participant(let index):
            count(.participantCrash)
            lost = crashParticipant(index)
            for txid in participants[index].storage.recorded.keys.sorted() { checkAgreement(txid) }
        }
        faults[.lostRecord, default: 0] += lost
        record(.crashed(node, lostRecords: lost))
        if faultsActive {
            schedule(.restart(node, epoch: epoch(of: node)), after: SimTime.random(in: 10_000...1_000_000, using: &random))
        }
    }

    private func restartNow(_ node: SimNode) {
        record(.restarted(node))
        switch node {
        case .coordinator(let c):
            coordinators[c].up = true
            coordinators[c].cluster?.open()  // A new epoch for the name, fencing the old incarnation.
            try! coordinators[c].loop.recover(now: .microseconds(now))  // The simulated log never fails a read.
            kickCoordinator(c)
            scheduleCoordinatorWake(c)
        case .participant(let index):
            participants[index].up = true
            try! participants[index].loop.recover(now: .microseconds(now))  // The simulated store never fails a read.
            kickParticipant(index)
            scheduleParticipantWake(index)
        }
    }

    /// The coordinator process dies: its loop (memory, timers, clients' waits) is gone, the log
    /// keeps what was durable and each other write at random. A new incarnation waits for restart.
    private func crashCoordinator(_ c: Int) -> Int {
        coordinators[c].up = false
        coordinators[c].epoch += 1
        coordinators[c].inbox = []
        coordinators[c].busy = false
        coordinators[c].roundScheduled = false
        coordinators[c].wakeAt = nil
        coordinators[c].pausedUntil = nil
        forcedThisRound[c] = nil
        // A cluster's store is a database of its own: a coordinator's crash loses none of it.
        let lost = coordinators[c].log?.disk.crash(random: &random) ?? 0
        (coordinators[c].loop, coordinators[c].transport) = makeCoordinatorLoop(
            c, store: coordinators[c].store, epoch: coordinators[c].epoch, seed: random.next())
        return lost
    }

    /// The participant process dies: its loop (memory, timers, waiting requests) is gone, the
    /// store keeps what was durable and each other write at random. A new incarnation waits for
    /// restart.
    private func crashParticipant(_ index: Int) -> Int {
        participants[index].up = false
        participants[index].epoch += 1
        participants[index].inbox = []
        participants[index].busy = false
        participants[index].roundScheduled = false
        participants[index].wakeAt = nil
        participantForcing[index] = nil
        let lost = participants[index].storage.crash(random: &random)
        participants[index].loop = makeParticipantLoop(index, storage: participants[index].storage,
                                                       epoch: participants[index].epoch, seed: random.next())
        return lost
    }

    private func randomPartition() {
        guard faultsActive else { return }
        schedule(.partition, after: interval(options.partitionInterval))
        let nodes = allNodes
        let node = nodes[Int.random(in: 0..<nodes.count, using: &random)]
        guard !isIsolated(node) else { return }
        count(.partition)
        setIsolated(node, true)
        schedule(.heal(node), after: SimTime.random(in: 50_000...2_000_000, using: &random))
    }

    private func endFaults() {
        faultsActive = false
        crashMidStepArmed = nil
        record(.faultsEnded)
        for node in allNodes {
            setIsolated(node, false)
            if !isUp(node) { restartNow(node) }
        }
    }

    // MARK: - Client

    private func clientSubmit(_ txid: TxID) {
        guard let transaction = client.transactions[txid], transaction.report == nil else { return }
        schedule(.clientCheck(txid), after: options.clientRetryInterval)
        let c = transaction.coordinator
        guard coordinators[c].up, !(faultsActive && coordinators[c].isolated) else { return }
        record(.submitted(txid))
        let simulation = Unowned(simulation: self)
        let epoch = coordinators[c].epoch
        postCoordinator(c, .submit(
            txid, branches: transaction.branches, timeout: nil, wait: .decision,
            waitMax: .microseconds(options.clientRetryInterval),
            reply: { result in simulation.simulation.clientHeard(result, from: c, epoch: epoch) }))
    }

    /// The loop's answer to a submit. An earlier incarnation's answers never reach the client: its
    /// connections died with it.
    private func clientHeard(_ result: CoordinatorLoop.SubmitResult, from c: Int, epoch: Int) {
        guard coordinators[c].up, coordinators[c].epoch == epoch else { return }
        switch result {
        case .outcome(let txid, let outcome, _): clientTold(txid, outcome)
        case .rejected(let txid, let rejection): violate("coordinator rejected \(txid): \(rejection)")
        case .pending: break  // The client asks again (clientCheck).
        }
    }

    /// The simulation, in a reply closure the loop calls on the simulation's own thread.
    private struct Unowned: @unchecked Sendable {
        unowned let simulation: Simulation
    }

    private func clientCheck(_ txid: TxID) {
        guard let transaction = client.transactions[txid], transaction.report == nil else { return }
        count(.clientRetry)
        // A cluster's client asks another coordinator when its own does not answer (down or
        // paused), and at random: a resubmission of the same id is safe anywhere.
        let c = transaction.coordinator
        let unresponsive = !coordinators[c].up || coordinators[c].pausedUntil != nil
        if coordinators.count > 1, unresponsive || (faultsActive && chance(options.failoverRate)) {
            count(.failover)
            client.transactions[txid]!.coordinator = (c + 1 + Int.random(in: 0..<(coordinators.count - 1), using: &random)) % coordinators.count
        }
        clientSubmit(txid)
    }

    private func clientTold(_ txid: TxID, _ outcome: Outcome) {
        guard let earlier = client.transactions[txid]?.report else {
            client.transactions[txid]?.report = outcome
            record(.reported(txid, outcome))
            checkAgreement(txid)
            return
        }
        if earlier != outcome { violate("client was told \(txid) \(earlier), then \(outcome)") }
    }

    // MARK: - Invariants

    /// Consistency: no two participants hold different outcomes, and none holds an outcome other
    /// than the one the client was told.
    ///
    /// A read-only branch is left out: it changes nothing, so commit and abort are the same to it.
    /// (When every branch is read-only the coordinator logs nothing durable, so after a crash its
    /// recovery may tell those participants to abort a transaction the client was told committed.)
    private func checkAgreement(_ txid: TxID) {
        var committed: [Int] = []
        var aborted: [Int] = []
        for index in participants.indices where !client.isReadOnly(txid, at: Self.participantID(index)) {
            switch participants[index].storage.recorded[txid] {
            case .committed?: committed.append(index)
            case .aborted?: aborted.append(index)
            case .prepared?, nil: break
            }
        }
        if let c = committed.first, let a = aborted.first {
            violate("participants disagree on \(txid): P\(c) committed, P\(a) aborted")
        }
        switch client.transactions[txid]?.report {
        case .committed?:
            if let a = aborted.first { violate("client was told \(txid) committed, but P\(a) aborted it") }
        case .aborted?:
            if let c = committed.first { violate("client was told \(txid) aborted, but P\(c) committed it") }
        case nil:
            break
        }
    }

    /// Liveness, once faults have stopped: every transaction reported and ended, nothing left
    /// prepared or locked, and every yes-voter of a committed transaction holding the commit.
    private func checkSettled() {
        for txid in client.order {
            let transaction = client.transactions[txid]!
            guard let outcome = transaction.report else {
                violate("\(txid) was never reported to the client")
                return
            }
            for node in coordinators {
                if let phase = node.loop.machine.phase(of: txid) {
                    violate("\(txid) is still \(phase) at C\(node.index) after faults stopped")
                    return
                }
            }
            if let shared, shared.rows[txid].map({ !$0.ended && $0.outcome != nil }) == true {
                violate("\(txid) is decided but not ended in the shared store after faults stopped")
                return
            }
            for branch in transaction.branches {
                let index = Self.participantIndex(branch.participant)
                if let state = participants[index].loop.machine.state(of: txid),
                   [.staging, .prepared, .committing, .aborting].contains(state) {
                    violate("\(txid) is still \(state) at P\(index) after faults stopped")
                    return
                }
                if outcome == .committed, SimulatedResource.intendedVote(branch.payload) == "y",
                   participants[index].storage.recorded[txid] != .committed,
                   !participants[index].storage.forgottenCommits.contains(txid) {
                    violate("\(txid) committed, but P\(index), which voted yes, does not hold the commit")
                    return
                }
            }
        }
        for index in participants.indices where !participants[index].storage.locks.isEmpty {
            let held = participants[index].storage.locks.sorted { $0.key < $1.key }.map { "\($0.key) by \($0.value)" }
            violate("P\(index) still holds locks after faults stopped: \(held.joined(separator: ", "))")
            return
        }
    }

    private func violate(_ text: String) {
        guard violations.isEmpty else { return }
        violations.append(text)
        record(.violation(text))
    }

    // MARK: - Report

    private func report() -> SimulationReport {
        var committed = 0
        var aborted = 0
        for txid in client.order {
            switch client.transactions[txid]?.report {
            case .committed?: committed += 1
            case .aborted?: aborted += 1
            case nil: break
            }
        }
        return SimulationReport(
            seed: seed, variant: variant, transactions: client.order.count,
            committed: committed, aborted: aborted, steps: steps, simulatedTime: now,
            faults: faults, violations: violations, trace: violations.isEmpty ? [] : trace.lines)
    }

    static func participantID(_ index: Int) -> ParticipantID { ParticipantID("P\(index)") }

    static func participantIndex(_ participant: ParticipantID) -> Int {
        Int(participant.rawValue.dropFirst())!
    }
}

extension Simulation.Scheduled {
    func withSequence(_ sequence: UInt64) -> Self {
        switch self {
        case .toParticipant(let index, let message, let from, _): return .toParticipant(index, message, from: from, sequence: sequence)
        case .toCoordinator(let index, let message, let to, _): return .toCoordinator(index, message, to: to, sequence: sequence)
        default: return self
        }
    }
}

/// The result of one simulated run.
public struct SimulationReport: Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var variant: ProtocolVariant
    public var transactions: Int
    public var committed: Int
    public var aborted: Int
    public var steps: Int
    public var simulatedTime: SimTime
    public var faults: [FaultKind: Int]
    /// Empty when every invariant held.
    public var violations: [String]
    /// The last events before the violation (empty when there is none).
    public var trace: [String]

    public var passed: Bool { violations.isEmpty }

    /// The seed, the violation, the command that replays it, and the trace.
    public var description: String {
        guard !passed else {
            return "seed \(seed) (\(variant)): \(transactions) transactions, \(committed) committed, \(aborted) aborted, \(steps) steps"
        }
        return """
            seed \(seed) (\(variant)) FAILED: \(violations.joined(separator: "; "))
            replay: swift run arbiter simulate --seed \(seed)\(variant == .correct ? "" : " --variant \(variant.rawValue)") --trace-lines 500
            last events:
            \(trace.joined(separator: "\n"))
            """
    }
}
