import ArbiterCore
import ArbiterHTTP
import ArbiterRuntime
import Logging
import Synchronization
import Tracing

/// The coordinator's HTTP transport to its participants (the loop's ``CoordinatorTransport``).
///
/// The loop hands it one batch per participant per round; each goes out as one `POST /v1/batch`.
/// At most ``Options/inFlightMax`` requests are open per participant: a batch beyond that waits
/// for one to return and then goes out together with everything else that waits, so that under
/// load a participant gets few large requests (one HTTP exchange and, there, one fsync) rather
/// than many small ones. Replies and failures go back to the loop as inputs.
final class ParticipantLinks: CoordinatorTransport, Sendable {
    struct Options: Sendable {
        var inFlightMax = 4
        var batchSizeMax = 256
        /// How long a batch of prepares may take (the prepare deadline bounds it anyway).
        var prepareRequestTimeout: Duration
        /// How long a batch of commits or aborts may take before the retry timer resends.
        var decisionRequestTimeout: Duration = .seconds(5)
    }

    private struct Link {
        var queue: [CoordinatorMessage] = []
        /// The trace context of each message in `queue`, taken when the loop handed it over (a
        /// resend that waits here while its transaction completes still carries it).
        var queueTraces: [ServiceContext?] = []
        var inFlight = 0
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
    private let traces: TraceTable
    private let spawn: @Sendable (@escaping @Sendable () async -> Void) -> Void
    /// The loop's inbox, in a struct: a closure stored directly in the generic `Mutex` would be
    /// re-wrapped in two reabstraction thunks by every `withLock` (the inout write-back), a chain
    /// that grows with each message until calling it costs milliseconds.
    private struct Inbox: Sendable {
        var post: @Sendable (CoordinatorLoop.Input) -> Void
    }
    private let inbox = Mutex(Inbox(post: { _ in }))

    /// Where replies go: the loop's inbox (set once by the engine).
    var deliver: @Sendable (CoordinatorLoop.Input) -> Void {
        get { inbox.withLock { $0.post } }
        set { inbox.withLock { $0.post = newValue } }
    }

    /// - Parameter spawn: starts work in the service's task group.
    init(client: ProtocolClient, options: Options, traces: TraceTable, logger: Logger,
         spawn: @escaping @Sendable (@escaping @Sendable () async -> Void) -> Void) {
        self.client = client
        self.options = options
        self.traces = traces
        self.logger = logger
        self.spawn = spawn
    }

    /// Waits, at most `timeout`, until nothing is left to send: a graceful shutdown lets the
    /// requests in flight finish instead of cutting them off.
    func drain(timeout: Duration, logger: Logger) async {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if isIdle { return }
            try? await Task.sleep(for: .milliseconds(5))
        }
        logger.warning("shutdown: requests still in flight after \(timeout); recovery will finish them")
    }

    /// Whether no message is queued or on the wire.
    var isIdle: Bool { links.withLock { $0.values.allSatisfy { $0.queue.isEmpty && $0.inFlight == 0 } } }

    /// Sends `messages` now if the participant's link has room, else queues them for the next
    /// request. Never blocks.
    func send(_ messages: [CoordinatorMessage], to participant: ParticipantID) {
        let contexts = traces.isTracing ? messages.map { traces.context(of: $0.txid) } : Array(repeating: nil, count: messages.count)
        let batch = links.withLock { links -> Batch? in
            var link = links[participant] ?? Link()
            link.queue.append(contentsOf: messages)
            link.queueTraces.append(contentsOf: contexts)
            links[participant] = link
            return takeBatch(for: participant, &links)
        }
        if let batch { start(batch, to: participant) }
    }

    /// Takes the next request's messages off `participant`'s queue if the link has room.
    private func takeBatch(for participant: ParticipantID, _ links: inout [ParticipantID: Link]) -> Batch? {
        guard var link = links[participant], !link.queue.isEmpty, link.inFlight < options.inFlightMax else { return nil }
        let count = min(link.queue.count, link.singleMessages ? 1 : options.batchSizeMax)
        let messages = Array(link.queue.prefix(count))
        let contexts = Array(link.queueTraces.prefix(count))
        link.queue.removeFirst(count)
        link.queueTraces.removeFirst(count)
        link.inFlight += 1
        link.inFlightMessages += messages.count
        links[participant] = link
        return Batch(messages: messages, traces: contexts)
    }

    /// The messages of one request, with their trace contexts.
    private struct Batch: Sendable {
        var messages: [CoordinatorMessage]
        var traces: [ServiceContext?]
    }

    private func start(_ batch: Batch, to participant: ParticipantID) {
        spawn { [self] in
            await send(batch, to: participant)
            let next = links.withLock { links -> Batch? in
                links[participant]?.inFlight -= 1
                links[participant]?.inFlightMessages -= batch.messages.count
                return takeBatch(for: participant, &links)
            }
            if let next { start(next, to: participant) }
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
            send(batch, to: participant)
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
        let deliver = self.deliver
        for (message, result) in zip(batch, results) {
            switch result {
            case .success(let reply):
                deliver(.received(participant, reply))
            case .failure(let detail):
                // The participant refused this message (e.g. it had no answer in time): the same
                // as silence for phase 2; for a prepare, no vote means abort.
                if case .prepare = message {
                    deliver(.unreachable(participant, message.txid, reason: detail.message))
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
        logger.debug("participant unreachable", metadata: ["participant": "\(participant)", "reason": "\(reason)"])
        let deliver = self.deliver
        for message in batch {
            deliver(.unreachable(participant, message.txid, reason: reason))
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
