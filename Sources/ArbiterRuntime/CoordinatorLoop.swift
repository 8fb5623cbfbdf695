public import ArbiterCore

/// The decision log as the coordinator's loop sees it: the SQLite log in production
/// (`DecisionLog`), a simulated disk with crash semantics in the simulator.
///
/// Called from the loop's thread only, one call at a time.
public protocol DecisionStore: AnyObject {
    /// Applies `records` in order in one storage transaction, durable on return when `forced`.
    /// Throws when nothing of it was applied; the loop retries the round's write.
    ///
    /// A store that several coordinators share writes each record only if this coordinator still
    /// owns its transaction, and a decision only if none other is recorded; it skips the records
    /// of any other transaction and returns their ids, the rest applied (fencing). A store of one
    /// coordinator refuses nothing and returns `[]`.
    func commit(_ records: [CoordinatorRecord], forced: Bool) throws -> [TxID]
    /// What the log holds of each of `txids`, in order (every write that returned included).
    func lookup(_ txids: [TxID]) throws -> [LoggedTransaction?]
    /// The records of every transaction that has not ended, in log order.
    func recover() throws -> [CoordinatorRecord]
}

/// A decision store that several coordinators share (a coordinator cluster). Each coordinator
/// holds a lease on the store's clock, renewed while it runs; every transaction row carries its
/// owner and the owner's epoch, and ``DecisionStore/commit(_:forced:)`` writes only the rows this
/// coordinator owns (fencing). Safety rests on those conditional writes alone; the lease only says
/// when the others may take a coordinator's unfinished transactions over.
///
/// Opening the store takes this coordinator's lease with a new epoch, which fences any older
/// incarnation of the same name; ``DecisionStore/recover()`` then adopts the name's unfinished
/// transactions under that epoch.
public protocol SharedDecisionStore: DecisionStore {
    /// Extends this coordinator's lease. `false`: a newer incarnation of this coordinator's name
    /// holds it; this one is fenced for good and must stop.
    func renewLease() throws -> Bool
    /// Takes over up to `limit` unfinished transactions of coordinators whose lease has expired
    /// and returns their records, in log order; this coordinator owns them from now on.
    func claimOrphans(limit: Int) throws -> [CoordinatorRecord]
}

/// How a coordinator of a cluster keeps its lease and takes over the work of dead ones.
public struct ClusterDuties: Hashable, Sendable {
    /// How often the lease is renewed: a fraction of its length, so that a renewal or two may
    /// fail (a slow round, a store that blinks) before it lapses.
    public var leaseRenewal: Duration
    /// How often the store is searched for transactions of coordinators whose lease expired.
    public var sweepInterval: Duration
    /// How many such transactions one sweep takes over.
    public var claimBatch: Int

    public init(leaseRenewal: Duration, sweepInterval: Duration, claimBatch: Int = 256) {
        self.leaseRenewal = leaseRenewal
        self.sweepInterval = sweepInterval
        self.claimBatch = claimBatch
    }
}

/// The coordinator's way to its participants: HTTP in production, a simulated network in the
/// simulator.
public protocol CoordinatorTransport: AnyObject {
    /// Sends `messages` to `participant` as one batch and returns at once. Replies come back to the
    /// loop as ``CoordinatorLoop/Input/received(_:_:)``; a batch that could not be delivered as
    /// ``CoordinatorLoop/Input/unreachable(_:_:reason:)`` per message.
    func send(_ messages: [CoordinatorMessage], to participant: ParticipantID)
}

/// What a service watches of its loop (metrics, traces, logs). Called on the loop's thread.
public protocol CoordinatorLoopObserver: AnyObject {
    /// A client may hear the outcome; `latency` since the transaction's first submit.
    func decided(_ txid: TxID, _ outcome: Outcome, latency: Duration?)
    /// Phase 2 finished.
    func completed(_ txid: TxID, _ outcome: Outcome, latency: Duration?)
    func rejected(_ txid: TxID, _ rejection: SubmitRejection)
    func anomaly(_ txid: TxID, _ text: String)
    /// A retry timer resent a decision in `count` messages.
    func resent(_ count: Int)
    /// The round's write is about to make these transactions' forced records durable.
    func forcing(_ txids: [TxID], writes: Int)
    /// The write returned (or failed with `error`).
    func wrote(_ txids: [TxID], error: (any Error)?)
    /// The machine stopped driving `txid`: the store refused its records, because another
    /// coordinator owns it now.
    func disowned(_ txid: TxID)
    /// A round ended; the machine drives `active` transactions.
    func roundEnded(active: Int)
    /// A protocol timer fired (the simulator's trace).
    func fired(_ timer: TimerID)
    /// A sweep took these transactions over from coordinators whose lease expired.
    func claimed(_ txids: [TxID])
    /// A newer incarnation of this coordinator's name holds the lease: this one must stop.
    func fencedOut()
}

extension CoordinatorLoopObserver {
    public func disowned(_ txid: TxID) {}
    public func claimed(_ txids: [TxID]) {}
    public func fencedOut() {}
    public func decided(_ txid: TxID, _ outcome: Outcome, latency: Duration?) {}
    public func completed(_ txid: TxID, _ outcome: Outcome, latency: Duration?) {}
    public func rejected(_ txid: TxID, _ rejection: SubmitRejection) {}
    public func anomaly(_ txid: TxID, _ text: String) {}
    public func resent(_ count: Int) {}
    public func forcing(_ txids: [TxID], writes: Int) {}
    public func wrote(_ txids: [TxID], error: (any Error)?) {}
    public func roundEnded(active: Int) {}
    public func fired(_ timer: TimerID) {}
}

/// The coordinator's one loop: it owns the ``CoordinatorLogic`` machine and turns what arrives into
/// rounds, raft's Ready/Advance:
///
/// 1. ``step(_:now:)`` takes everything that arrived (client requests, participants' replies,
///    transport failures) and the timers that are due, and steps the machine with each;
/// 2. ``write()`` commits every record those steps produced in one storage transaction, forced if
///    any of them must be (group commit falls out of the round: whatever arrived during the last
///    fsync shares the next one);
/// 3. ``advance()`` tells the machine which forced records are durable, answers its lookups from
///    the log, then sends the round's messages, one batch per participant, and last answers the
///    clients.
///
/// Nothing is sent or answered before the round's write returns, so nothing is visible before the
/// record that justifies it is on disk — except a client's `pending` when its wait runs out, which
/// reveals nothing and is answered at once. The loop has no thread, clock or queue of its own: the
/// service runs it with ``LoopThread`` on a dedicated thread with the monotonic clock, and the
/// simulator runs the same type over a simulated disk, network and clock.
public final class CoordinatorLoop {
    /// What a client is told about its transaction.
    public enum SubmitResult: Hashable, Sendable {
        case outcome(TxID, Outcome, reason: String?)
        case rejected(TxID, SubmitRejection)
        /// No outcome within the client's wait; the transaction goes on.
        case pending(TxID)
    }

    /// When a submit is answered.
    public enum Wait: Hashable, Sendable {
        /// Once the decision is durable (the default).
        case decision
        /// Once phase 2 has finished: every participant acknowledged.
        case completion
    }

    /// What came of an operator's retry of phase 2.
    public enum RetryResult: Hashable, Sendable {
        /// The decision went out again, now, to these participants.
        case resent([ParticipantID])
        /// The machine is not in phase 2 of the transaction: undecided (`phase` set), or not
        /// driven any more (`phase` nil: ended, or never seen).
        case notOwed(CoordinatorPhase?)
    }

    /// Something that arrived for the loop.
    public enum Input: Sendable {
        /// A client's submit; `reply` is called once, on the loop's thread: with the outcome, a
        /// rejection, or `pending` once `waitMax` has passed.
        case submit(TxID, branches: [Branch], timeout: Duration?, wait: Wait, waitMax: Duration,
                    reply: @Sendable (SubmitResult) -> Void)
        /// A participant's inquiry by request; `reply` is called once, on the loop's thread.
        case inquiry(TxID, reply: @Sendable (InquiryAnswer) -> Void)
        case received(ParticipantID, ParticipantMessage)
        case unreachable(ParticipantID, TxID, reason: String)
        /// An operator's lever: resend the decision now.
        case retryPhaseTwoNow(TxID, reply: @Sendable (RetryResult) -> Void)
        /// Reads the machine on the loop's thread (operators' views).
        case inspect(@Sendable (any CoordinatorLogic) -> Void)
        /// Sets the URL that travels in every `prepare` as where to send inquiries.
        case advertise(CoordinatorID)
    }

    private struct Waiter {
        var call: CallID
        var wait: Wait
        var reply: @Sendable (SubmitResult) -> Void
    }

    /// The loop's own timers, beside the machine's.
    private enum Timer {
        case clientDeadline(TxID, CallID)
        /// A cluster's coordinator renews its lease.
        case renewLease
    }

    public private(set) var machine: any CoordinatorLogic
    private let store: any DecisionStore
    private let transport: any CoordinatorTransport
    private weak var observer: (any CoordinatorLoopObserver)?

    private var timers = LoopTimers<Timer>()
    private var now: Duration { timers.now }
    private var nextCall: UInt64 = 0
    private var waiters: [TxID: [Waiter]] = [:]
    private var inquiries: [CallID: @Sendable (InquiryAnswer) -> Void] = [:]
    /// When each active transaction was first submitted, for the latency figures.
    private var started: [TxID: Duration] = [:]
    /// The reason given with a reported abort, kept for clients that wait for completion.
    private var reasons: [TxID: String] = [:]

    // The round in progress.
    private var records: [CoordinatorRecord] = []
    private var forced: [TxID] = []
    /// Forced writes of the round being written (set by ``write()``, consumed by ``advance()``).
    private var writing: [TxID] = []
    /// Transactions whose records the round's write refused (another coordinator owns them).
    private var refused: Set<TxID> = []
    private var written = false
    private var lookups: [TxID] = []
    private var outgoing: [ParticipantID: [CoordinatorMessage]] = [:]
    /// Since when each participant's `outgoing` holds only phase-2 messages nobody waits for,
    /// held back for the next round that sends it something else (see ``phaseTwoHold``).
    private var heldSince: [ParticipantID: Duration] = [:]
    /// How long a commit or abort that no client waits for may wait for other traffic to its
    /// participant: at low load the next transaction's prepare comes within it, and the two share
    /// one request and, at the participant, one fsync (a participant otherwise forces the commit
    /// alone, and the next prepare waits behind that fsync). Under load every round has traffic
    /// for every participant and nothing waits. Zero sends at once.
    public var phaseTwoHold: Duration = .milliseconds(2)
    /// Participants in the order the round first sent to them.
    private var peers: [ParticipantID] = []
    /// The round's answers, given after its write. One about a transaction whose records the
    /// write refused is "pending" instead (another coordinator owns it now).
    private var replies: [Reply] = []

    private enum Reply {
        case submit(TxID, SubmitResult, @Sendable (SubmitResult) -> Void)
        case inquiry(TxID, InquiryAnswer, @Sendable (InquiryAnswer) -> Void)
        case retry(RetryResult, @Sendable (RetryResult) -> Void)

        func deliver(fenced: Set<TxID>) {
            switch self {
            case .submit(let txid, let result, let reply): reply(fenced.contains(txid) ? .pending(txid) : result)
            case .inquiry(let txid, let answer, let reply): reply(fenced.contains(txid) ? .pending : answer)
            case .retry(let result, let reply): reply(result)
            }
        }
    }

    /// A cluster's duties (with a ``SharedDecisionStore``); `nil` for a coordinator alone.
    private let duties: ClusterDuties?
    /// A newer incarnation of this coordinator's name took its lease: the loop must not run on.
    public private(set) var isFencedOut = false
    /// When a cluster's coordinator next sweeps for transactions of coordinators whose lease
    /// expired (`nil` alone).
    private var nextSweep: Duration?

    public init(machine: any CoordinatorLogic, store: any DecisionStore, transport: any CoordinatorTransport,
                observer: (any CoordinatorLoopObserver)? = nil, duties: ClusterDuties? = nil) {
        precondition(duties == nil || store is any SharedDecisionStore, "cluster duties need a store the coordinators share")
        self.machine = machine
        self.store = store
        self.transport = transport
        self.observer = observer
        self.duties = duties
    }

    /// Rebuilds the machine's state from the log; the first round's write and advance carry out
    /// what recovery asks (resends, abort records). Call once, before the first ``step(_:now:)``.
    public func recover(now: Duration) throws {
        timers.advance(to: now)
        apply(machine.handle(.recovered(try store.recover())))
        if let duties {
            timers.schedule(.renewLease, after: duties.leaseRenewal)
            nextSweep = now
        }
    }

    /// Whether a round has work even if nothing arrives: records to write or lookups to answer.
    public var hasWork: Bool { !records.isEmpty || !lookups.isEmpty || outgoing.count > heldSince.count || !replies.isEmpty }

    /// When the earliest timer is due (`nil` when none is set).
    public var nextDeadline: Duration? {
        var timer = timers.nextDeadline
        if let nextSweep { timer = min(timer ?? nextSweep, nextSweep) }
        guard let held = heldSince.values.min().map({ $0 + phaseTwoHold }) else { return timer }
        return min(timer ?? held, held)
    }

    /// Transactions the machine is driving.
    public var activeCount: Int { machine.activeCount }

    // MARK: - The round

    /// Steps the machine with `inputs`, then with every timer due at `now`.
    public func step(_ inputs: [Input], now: Duration) {
        timers.advance(to: now)
        if let due = nextSweep, due <= now, records.isEmpty { sweep() }  // Not while a held round waits to be written.
        for input in inputs { take(input) }
        while let due = timers.popDue() { fire(due) }
    }

    /// The round's write: every record of the round in one storage transaction, forced if any
    /// must be. On a throw nothing was applied, the round stays whole, and the next call retries it.
    public func write() throws {
        writing = forced
        if !records.isEmpty {
            observer?.forcing(forced, writes: records.count)
            do {
                refused = Set(try store.commit(records, forced: !forced.isEmpty))
            } catch {
                observer?.wrote(forced, error: error)
                throw error
            }
            observer?.wrote(forced, error: nil)
        }
        records.removeAll(keepingCapacity: true)
        forced.removeAll(keepingCapacity: true)
        written = true
    }

    /// Whether the round's write must reach the disk before ``advance()`` (a simulator lets time
    /// pass for the fsync).
    public var roundIsForced: Bool { !forced.isEmpty }

    /// The round's advance: the machine learns what is durable and what the log holds, then the
    /// round's messages go out, one batch per participant, and the clients are answered. Records
    /// this produces wait for the next round's write.
    public func advance() {
        precondition(written, "advance() before the round's write")
        written = false
        let fenced = refused
        refused.removeAll()
        let answeredBeforeFencing = replies.count
        if !fenced.isEmpty {
            // Nothing that the refused records would have justified leaves: not the round's
            // messages about those transactions, nor its answers about them.
            for peer in peers {
                outgoing[peer]?.removeAll { fenced.contains($0.txid) }
                if outgoing[peer]?.isEmpty == true {
                    outgoing[peer] = nil
                    heldSince[peer] = nil
                }
            }
            for txid in fenced.sorted() { apply(machine.handle(.fenced(txid))) }
        }
        for txid in writing where !fenced.contains(txid) { apply(machine.handle(.forced(txid))) }
        writing.removeAll(keepingCapacity: true)
        // One read for the round's lookups; serving them asks for none (the machine parks later
        // requests behind the first). If the read fails, they are asked again after the next write.
        if !lookups.isEmpty {
            let asked = lookups
            if let logged = try? store.lookup(asked) {
                lookups.removeAll(keepingCapacity: true)
                for (txid, found) in zip(asked, logged) { apply(machine.handle(.lookedUp(txid, found))) }
            }
        }
        send()
        let answers = replies
        replies.removeAll(keepingCapacity: true)
        for (index, reply) in answers.enumerated() {
            // Answers the fencing itself produced (after a new lookup) stand as they are.
            reply.deliver(fenced: index < answeredBeforeFencing ? fenced : [])
        }
        observer?.roundEnded(active: machine.activeCount)
    }

    /// Sends the round's messages: one batch per participant, participants in the order the
    /// round first addressed them.
    private func send() {
        for peer in peers {
            guard let messages = outgoing[peer], !messages.isEmpty else { continue }
            if phaseTwoHold > .zero, messages.allSatisfy(isHoldable) {
                let since = heldSince[peer] ?? now
                if now - since < phaseTwoHold {
                    heldSince[peer] = since
                    continue
                }
            }
            outgoing[peer] = nil
            heldSince[peer] = nil
            transport.send(messages, to: peer)
        }
        peers.removeAll(keepingCapacity: true)
        for peer in heldSince.keys.sorted() { peers.append(peer) }  // Looked at again next round.
    }

    /// A commit or abort of a transaction no client waits to see completed.
    private func isHoldable(_ message: CoordinatorMessage) -> Bool {
        switch message {
        case .commit(let txid), .abort(let txid):
            return !(waiters[txid]?.contains { $0.wait == .completion } ?? false)
        case .prepare, .outcome:
            return false
        }
    }

    /// Answers every client still waiting `pending` (a shutdown: the transactions go on at the
    /// next start).
    public func answerWaitingClients() {
        for (txid, list) in waiters {
            for waiter in list { waiter.reply(.pending(txid)) }
        }
        waiters.removeAll()
        for (_, reply) in inquiries { reply(.pending) }
        inquiries.removeAll()
    }

    // MARK: - Inputs

    private func take(_ input: Input) {
        switch input {
        case .submit(let txid, let branches, let timeout, let wait, let waitMax, let reply):
            let call = newCall()
            waiters[txid, default: []].append(Waiter(call: call, wait: wait, reply: reply))
            timers.schedule(.clientDeadline(txid, call), after: waitMax)
            if started[txid] == nil, machine.phase(of: txid) == nil { started[txid] = now }
            apply(machine.handle(.submit(txid, branches: branches, timeout: timeout, call: call)))
        case .inquiry(let txid, let reply):
            let call = newCall()
            inquiries[call] = reply
            apply(machine.handle(.inquiry(txid, call: call)))
        case .received(let participant, let message):
            apply(machine.handle(.received(from: participant, message)))
        case .unreachable(let participant, let txid, let reason):
            apply(machine.handle(.unreachable(participant, txid, reason: reason)))
        case .retryPhaseTwoNow(let txid, let reply):
            guard let owing = machine.owingAcknowledgement(txid) else {
                let phase = machine.phase(of: txid)
                replies.append(.retry(.notOwed(phase), reply))
                return
            }
            apply(machine.handle(.retryPhaseTwoNow(txid)))
            replies.append(.retry(.resent(owing), reply))
        case .inspect(let read):
            read(machine)
        case .advertise(let identity):
            machine.identity = identity
        }
    }

    /// Takes over the unfinished transactions of coordinators whose lease expired, first thing in
    /// a round: nothing of the round is recorded yet, so what the store holds of them is all
    /// there is. They are this coordinator's once the claim commits; the machine resumes them
    /// from the store's records, and the round writes and sends what that asks.
    private func sweep() {
        nextSweep = now + duties!.sweepInterval
        guard !isFencedOut, let claimed = try? (store as! any SharedDecisionStore).claimOrphans(limit: duties!.claimBatch),
              !claimed.isEmpty else { return }
        var txids: [TxID] = []
        var seen: Set<TxID> = []
        for record in claimed where seen.insert(record.txid).inserted { txids.append(record.txid) }
        observer?.claimed(txids)
        apply(machine.handle(.adopted(claimed)))
    }

    private func newCall() -> CallID {
        nextCall += 1
        return CallID(nextCall)
    }

    private func fire(_ due: LoopTimers<Timer>.Due) {
        switch due {
        case .machine(let id):
            observer?.fired(id)
            let effects = machine.handle(.timerFired(id))
            if id.kind == .phaseTwoRetry {
                let sent = effects.count { if case .send = $0 { true } else { false } }
                if sent > 0 { observer?.resent(sent) }
            }
            apply(effects)
        case .own(.renewLease):
            // Between rounds' writes, in a store transaction of its own. A renewal that fails
            // is tried again at the next tick; the lease has room for a few.
            timers.schedule(.renewLease, after: duties!.leaseRenewal)
            if (try? (store as! any SharedDecisionStore).renewLease()) == false {
                isFencedOut = true
                observer?.fencedOut()
            }
        case .own(.clientDeadline(let txid, let call)):
            // Answered at once, not with the round: "no outcome yet" reveals nothing, and a
            // client must hear it even while the log cannot be written (the round then stays
            // held, see write()).
            guard var list = waiters[txid], let index = list.firstIndex(where: { $0.call == call }) else { return }
            let reply = list.remove(at: index).reply
            waiters[txid] = list.isEmpty ? nil : list
            reply(.pending(txid))
        }
    }

    // MARK: - Effects

    private func apply(_ effects: [CoordinatorEffect]) {
        for effect in effects {
            switch effect {
            case .send(let participant, let message):
                if outgoing[participant] == nil {
                    outgoing[participant] = []
                    peers.append(participant)
                }
                outgoing[participant]!.append(message)
            case .write(let written):
                records.append(contentsOf: written)
            case .force(let written):
                records.append(contentsOf: written)
                guard let txid = written.first?.txid else { preconditionFailure("an empty forced write") }
                forced.append(txid)
            case .setTimer(let id, let delay):
                timers.set(id, after: delay)
            case .cancelTimer(let id):
                timers.cancel(id)
            case .lookup(let txid):
                lookups.append(txid)
            case .report(let txid, let outcome, let reason):
                observer?.decided(txid, outcome, latency: started[txid].map { now - $0 })
                if let reason, waiters[txid] != nil { reasons[txid] = reason }
                answer(txid, waiting: .decision) { .outcome(txid, outcome, reason: reason) }
            case .complete(let txid, let outcome):
                observer?.completed(txid, outcome, latency: started.removeValue(forKey: txid).map { now - $0 })
                let reason = reasons.removeValue(forKey: txid)
                answer(txid, waiting: nil) { .outcome(txid, outcome, reason: reason) }
            case .replay(let txid, let outcome, let reason):
                started[txid] = nil
                answer(txid, waiting: nil) { .outcome(txid, outcome, reason: reason) }
            case .reject(let call, let txid, let rejection):
                observer?.rejected(txid, rejection)
                if machine.phase(of: txid) == nil { started[txid] = nil }
                answer(txid, only: call) { .rejected(txid, rejection) }
            case .answer(let call, let txid, let inquiryAnswer):
                if let reply = inquiries.removeValue(forKey: call) {
                    replies.append(.inquiry(txid, inquiryAnswer, reply))
                }
            case .anomaly(let txid, let text):
                observer?.anomaly(txid, text)
            case .disowned(let txid):
                observer?.disowned(txid)
                started[txid] = nil
                reasons[txid] = nil
                answer(txid, waiting: nil) { .pending(txid) }
            case .underwayElsewhere(let call, let txid):
                if machine.phase(of: txid) == nil { started[txid] = nil }
                answer(txid, only: call) { .pending(txid) }
            }
        }
    }

    /// Answers the waiters of `txid` that wait for `wait` (all of them when `nil`), in the
    /// round's replies.
    private func answer(_ txid: TxID, waiting wait: Wait?, _ result: () -> SubmitResult) {
        guard var list = waiters[txid] else { return }
        let value = result()
        list.removeAll { waiter in
            guard wait == nil || waiter.wait == wait else { return false }
            let reply = waiter.reply
            replies.append(.submit(txid, value, reply))
            return true
        }
        waiters[txid] = list.isEmpty ? nil : list
        // Deadline timers of answered waiters stay in the heap and find nobody when they fire.
    }

    private func answer(_ txid: TxID, only call: CallID, _ result: () -> SubmitResult) {
        guard var list = waiters[txid], let index = list.firstIndex(where: { $0.call == call }) else { return }
        let reply = list.remove(at: index).reply
        let value = result()
        replies.append(.submit(txid, value, reply))
        waiters[txid] = list.isEmpty ? nil : list
    }
}
