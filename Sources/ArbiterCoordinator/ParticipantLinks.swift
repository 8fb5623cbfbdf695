import ArbiterCore
import ArbiterHTTP
import ArbiterRuntime
import Logging
import Synchronization
import Tracing

/// The coordinator's outgoing traffic, one link per participant.
///
/// Messages for a participant queue on its link, and the link sends everything queued as one
/// `POST /v1/batch`. Normally one request is open per participant: what arrives while it is out
/// waits for its answer and then goes in the next batch. Under load this turns a message per
/// transaction into a request per round trip: dozens of prepares or commits share one HTTP exchange
/// and, at the participant, one fsync. A request that takes longer than ``Options/patience`` (a
/// participant slow on one message, a stalled connection) lets the link open another, up to
/// ``Options/inFlightMax``, so that one slow answer does not hold up every other transaction.
///
/// Phase-2 messages that nobody waits for (the client asked to be answered at the decision) may
/// linger, up to ``Options/phaseTwoLinger``, for the next request to the participant: at low load
/// the next transaction's prepare usually comes within it, and the commit rides in its request,
/// sharing the HTTP exchange and, at the participant, the forced write. Phase 2 is asynchronous to
/// the client, so only the participant's locks are held that much longer.
final class ParticipantLinks: Sendable {
    struct Options: Sendable {
        var inFlightMax = 4
        /// How long the newest open request may be out before a second one is opened beside it.
        var patience: Duration = .milliseconds(20)
        var batchSizeMax = 256
        /// How long a phase-2 message nobody waits for may wait for a request to share.
        var phaseTwoLinger: Duration = .milliseconds(2)
        /// How long a batch of prepares may take (the prepare deadline bounds it anyway).
        var prepareRequestTimeout: Duration
        /// How long a batch of commits or aborts may take before the retry timer resends.
        var decisionRequestTimeout: Duration = .seconds(5)
    }

    private struct Link {
        var queue: [CoordinatorMessage] = []
        /// The trace context of each message in `queue`, taken when it was queued (a resend after
        /// the transaction completed still carries it).
        var queueTraces: [ServiceContext?] = []
        var inFlight = 0
        /// Messages in `queue` that must not linger: prepares, and phase-2 messages a client waits for.
        var queuedUrgent = 0
        /// When the oldest message in `queue` that may linger was queued; nil when none is queued.
        var lingerStarted: ContinuousClock.Instant?
        /// Whether a wake-up is scheduled for the end of a linger.
        var wakeScheduled = false
        /// When the newest request was sent.
        var lastSent = ContinuousClock.Instant.now
        /// Set when the participant does not serve `/v1/batch`: send one message per request.
        var singleMessages = false
        /// Messages in requests sent and not yet answered.
        var inFlightMessages = 0
        /// Since when every request failed to reach the participant; nil once one got an answer.
        var unreachableSince: ContinuousClock.Instant?
    }

    /// One participant as the operator's metrics see it.
    struct Reachability: Hashable, Sendable {
        var participant: ParticipantID
        /// Messages queued or in requests not yet answered.
        var outstandingMessages: Int
        /// How long every request has failed; zero while it answers.
        var unreachableFor: Duration
    }

    /// Every participant the coordinator has sent to since it started, in name order.
    func reachability() -> [Reachability] {
        let now = ContinuousClock.now
        return links.withLock { links in
            links.map { participant, link in
                Reachability(
                    participant: participant, outstandingMessages: link.queue.count + link.inFlightMessages,
                    unreachableFor: link.unreachableSince.map { now - $0 } ?? .zero)
            }
        }.sorted { $0.participant.rawValue < $1.participant.rawValue }
    }

    private func setReachable(_ participant: ParticipantID, _ reachable: Bool) {
        links.withLock { links in
            guard var link = links[participant] else { return }
            if reachable {
                link.unreachableSince = nil
            } else if link.unreachableSince == nil {
                link.unreachableSince = .now
            }
            links[participant] = link
        }
    }

    private let links = Mutex<[ParticipantID: Link]>([:])
    private let client: ProtocolClient
    private let options: Options
    private let logger: Logger
    private let spawn: @Sendable (@escaping @Sendable () async -> Void) -> Void
    private struct WeakEngine { weak var engine: CoordinatorEngine? }
    /// Weak: the engine owns the links, not the other way round.
    private let engineBox = Mutex(WeakEngine())

    /// The engine that handles the replies (set once by the engine).
    var engine: CoordinatorEngine? {
        get { engineBox.withLock { $0.engine } }
        set { engineBox.withLock { $0.engine = newValue } }
    }

    /// - Parameter spawn: starts work in the service's task group.
    init(client: ProtocolClient, options: Options, logger: Logger,
         spawn: @escaping @Sendable (@escaping @Sendable () async -> Void) -> Void) {
        self.client = client
        self.options = options
        self.logger = logger
        self.spawn = spawn
    }

    /// Whether no message is queued or on the wire.
    var isIdle: Bool { links.withLock { $0.values.allSatisfy { $0.queue.isEmpty && $0.inFlight == 0 } } }

    /// Queues `message` for `participant`; sends at once if the link has room. A message that is not
    /// `urgent` (the engine says so only of a phase-2 message no client waits for) may linger, see
    /// the type's description. Never blocks.
    func enqueue(_ message: CoordinatorMessage, to participant: ParticipantID, urgent: Bool = true, trace: ServiceContext? = nil) {
        var wakes: [(ParticipantID, Duration)] = []
        let batch = links.withLock { links -> Batch? in
            var link = links[participant] ?? Link()
            link.queue.append(message)
            link.queueTraces.append(trace)
            if urgent {
                link.queuedUrgent += 1
            } else if link.lingerStarted == nil {
                link.lingerStarted = .now
            }
            links[participant] = link
            return takeBatch(for: participant, &links, wakes: &wakes)
        }
        if let batch { start(batch, to: participant) }
        schedule(wakes)
    }

    /// Ends lingers when they are due.
    private func schedule(_ wakes: [(ParticipantID, Duration)]) {
        for (participant, delay) in wakes {
            EventLoopExecutor.run(after: delay) { [self] in
                var again: [(ParticipantID, Duration)] = []
                let batch = links.withLock { links -> Batch? in
                    links[participant]?.wakeScheduled = false
                    return takeBatch(for: participant, &links, wakes: &again)
                }
                if let batch { start(batch, to: participant) }
                schedule(again)
            }
        }
    }

    /// Opens a request on every link whose open ones have outlasted ``Options/patience`` while
    /// messages wait. Called by the engine's timer loop.
    func poke() {
        var wakes: [(ParticipantID, Duration)] = []
        let batches = links.withLock { links -> [(ParticipantID, Batch)] in
            var batches: [(ParticipantID, Batch)] = []
            for participant in links.keys where links[participant]?.queue.isEmpty == false {
                if let batch = takeBatch(for: participant, &links, wakes: &wakes) { batches.append((participant, batch)) }
            }
            return batches
        }
        for (participant, batch) in batches { start(batch, to: participant) }
        schedule(wakes)
    }

    /// Takes the next request's messages off `participant`'s queue if the rules let one open now.
    /// Adds to `wakes` when the queue lingers and nothing else will look at it in time.
    private func takeBatch(
        for participant: ParticipantID, _ links: inout [ParticipantID: Link], wakes: inout [(ParticipantID, Duration)]
    ) -> Batch? {
        guard var link = links[participant], !link.queue.isEmpty, link.inFlight < options.inFlightMax else { return nil }
        let now = ContinuousClock.now
        if link.queuedUrgent == 0, let started = link.lingerStarted, now - started < options.phaseTwoLinger {
            // Only lingering phase-2 messages: wait for a request to share, or the linger's end.
            if !link.wakeScheduled {
                link.wakeScheduled = true
                wakes.append((participant, options.phaseTwoLinger - (now - started)))
                links[participant] = link
            }
            return nil
        }
        guard link.inFlight == 0 || now - link.lastSent >= options.patience else { return nil }
        let count = min(link.queue.count, link.singleMessages ? 1 : options.batchSizeMax)
        let batch = Batch(messages: Array(link.queue.prefix(count)), traces: Array(link.queueTraces.prefix(count)))
        link.queue.removeFirst(count)
        link.queueTraces.removeFirst(count)
        if link.queue.isEmpty {
            link.queuedUrgent = 0
            link.lingerStarted = nil
        } else {
            // Rare (more than batchSizeMax waiting): what is left goes with the next request, whose
            // turn comes when this one returns, so lingering no longer matters.
            link.queuedUrgent = link.queue.count
        }
        link.inFlight += 1
        link.inFlightMessages += batch.messages.count
        link.lastSent = now
        links[participant] = link
        return batch
    }

    /// The messages of one request, with their trace contexts.
    private struct Batch: Sendable {
        var messages: [CoordinatorMessage]
        var traces: [ServiceContext?]
    }

    private func start(_ batch: Batch, to participant: ParticipantID) {
        spawn { [self] in
            await send(batch, to: participant)
            var wakes: [(ParticipantID, Duration)] = []
            let next = links.withLock { links -> Batch? in
                links[participant]?.inFlight -= 1
                links[participant]?.inFlightMessages -= batch.messages.count
                return takeBatch(for: participant, &links, wakes: &wakes)
            }
            if let next { start(next, to: participant) }
            schedule(wakes)
        }
    }

    private func send(_ queued: Batch, to participant: ParticipantID) async {
        let batch = queued.messages
        let hasPrepare = batch.contains { if case .prepare = $0 { true } else { false } }
        let timeout = hasPrepare ? options.prepareRequestTimeout : options.decisionRequestTimeout
        let (spans, traceparents) = traceSpans(batch, queued.traces, to: participant)
        defer { for span in spans { span?.end() } }
        let results: [Result<ParticipantMessage, ErrorDetail>]
        do {
            if batch.count == 1 || links.withLock({ $0[participant]?.singleMessages == true }) {
                results = try await sendEach(batch, to: participant, timeout: timeout, traceparents: traceparents)
            } else {
                results = try await client.sendBatch(batch, to: participant, timeout: timeout, traceparents: traceparents)
            }
        } catch let error where error.kind == .rejected && error.status == 404 && batch.count > 1 {
            // An implementation of the single-message endpoints only: fall back for good.
            links.withLock { $0[participant]?.singleMessages = true }
            logger.notice("participant has no /v1/batch; sending single messages", metadata: ["participant": "\(participant)"])
            for (message, trace) in zip(batch, queued.traces) { enqueue(message, to: participant, trace: trace) }
            return
        } catch {
            setReachable(participant, false)
            for span in spans { span?.setStatus(SpanStatus(code: .error, message: error.message)) }
            unreachable(batch, participant, reason: error.message)
            return
        }
        setReachable(participant, true)
        if batch.contains(where: { if case .commit = $0 { true } else { false } }) {
            // With several participants, the first hit is the first of several commits delivered.
            try? await Failpoints.hit("coordinator.after-commit-sent")
        }
        guard let engine else { return }
        for (message, result) in zip(batch, results) {
            switch result {
            case .success(let reply):
                engine.handle(.received(from: participant, reply))
            case .failure(let detail):
                // The participant refused this message (e.g. it had no answer in time): the same
                // as silence for phase 2; for a prepare, no vote means abort.
                if case .prepare = message {
                    engine.handle(.unreachable(participant, message.txid, reason: detail.message))
                }
            }
        }
    }

    private func sendEach(
        _ batch: [CoordinatorMessage], to participant: ParticipantID, timeout: Duration, traceparents: [String?]
    ) async throws(WireCallError) -> [Result<ParticipantMessage, ErrorDetail>] {
        var results: [Result<ParticipantMessage, ErrorDetail>] = []
        for (index, message) in batch.enumerated() {
            let traceparent = traceparents.isEmpty ? nil : traceparents[index]
            results.append(.success(try await client.send(message, to: participant, timeout: timeout, traceparent: traceparent)))
        }
        return results
    }

    /// A client-side span per traced message (`prepare`, or `phase2` for a commit or abort) and the
    /// `traceparent` each message carries; both empty when no message in the batch is traced, the
    /// common case without a tracer.
    private func traceSpans(
        _ batch: [CoordinatorMessage], _ contexts: [ServiceContext?], to participant: ParticipantID
    ) -> (spans: [(any Span)?], traceparents: [String?]) {
        guard contexts.contains(where: { $0 != nil }) else { return ([], []) }
        var spans: [(any Span)?] = []
        var traceparents: [String?] = []
        for (message, context) in zip(batch, contexts) {
            let span = WireTracing.startSpan(message.spanName, context: context, ofKind: .client)
            if let span {
                span.attributes["arbiter.txid"] = message.txid.rawValue
                span.attributes["arbiter.participant"] = participant.rawValue
                span.attributes["arbiter.message"] = message.kindName
                span.attributes["arbiter.batch.size"] = batch.count
            }
            spans.append(span)
            traceparents.append(WireTracing.traceparent(for: span?.context ?? context))
        }
        return (spans, traceparents)
    }

    private func unreachable(_ batch: [CoordinatorMessage], _ participant: ParticipantID, reason: String) {
        guard let engine else { return }
        logger.debug("participant unreachable", metadata: ["participant": "\(participant)", "reason": "\(reason)"])
        for message in batch {
            engine.handle(.unreachable(participant, message.txid, reason: reason))
        }
    }
}

extension CoordinatorMessage {
    /// The span a message's request runs in: `prepare` in phase 1, `phase2` for a decision.
    fileprivate var spanName: String {
        if case .prepare = self { return "prepare" }
        return "phase2"
    }

    fileprivate var kindName: String {
        switch self {
        case .prepare: return "prepare"
        case .commit: return "commit"
        case .abort: return "abort"
        case .outcome: return "outcome"
        }
    }
}
