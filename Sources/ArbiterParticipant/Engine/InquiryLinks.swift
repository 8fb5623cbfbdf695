import ArbiterCore
import ArbiterHTTP
import ArbiterRuntime
import Logging
import Synchronization

/// The participant loop's ``ParticipantTransport``: asks coordinators over HTTP
/// (`GET /v1/transactions/{id}/outcome`) what became of transactions in doubt, at most
/// `concurrencyMax` at once and one per transaction, and posts each answer back to the loop. A
/// failed inquiry is dropped: the machine's timer asks again after its backoff.
final class InquiryLinks: ParticipantTransport, Sendable {
    private let client: ProtocolClient
    private let timeout: Duration
    private let concurrencyMax: Int
    private let logger: Logger
    private let traceparent: @Sendable (TxID) -> String?
    private let post: @Sendable (ParticipantLoop.Input) -> Void
    private let state = Mutex(State())

    private struct State {
        var running = 0
        var queue: [(TxID, CoordinatorID)] = []
        var asking: Set<TxID> = []
    }

    /// Inquiries waiting for a free slot; beyond it they are dropped (asked again after the backoff).
    private static var queueLengthMax: Int { 65_536 }

    init(client: ProtocolClient, timeout: Duration, concurrencyMax: Int, logger: Logger,
         traceparent: @escaping @Sendable (TxID) -> String?, post: @escaping @Sendable (ParticipantLoop.Input) -> Void) {
        self.client = client
        self.timeout = timeout
        self.concurrencyMax = concurrencyMax
        self.logger = logger
        self.traceparent = traceparent
        self.post = post
    }

    func inquire(_ txids: [TxID], of coordinator: CoordinatorID) {
        let starting = state.withLock { state -> [(TxID, CoordinatorID)] in
            var starting: [(TxID, CoordinatorID)] = []
            for txid in txids where state.asking.insert(txid).inserted {
                if state.running < concurrencyMax {
                    state.running += 1
                    starting.append((txid, coordinator))
                } else if state.queue.count < Self.queueLengthMax {
                    state.queue.append((txid, coordinator))
                } else {
                    state.asking.remove(txid)
                }
            }
            return starting
        }
        for (txid, coordinator) in starting { ask(txid, coordinator) }
    }

    private func ask(_ txid: TxID, _ coordinator: CoordinatorID) {
        Task {
            do {
                let answer = try await client.inquire(txid, coordinator: coordinator, timeout: timeout, traceparent: traceparent(txid))
                logger.debug("inquiry answered", metadata: ["txid": "\(txid)", "answer": "\(answer)"])
                // Between the coordinator's answer and its effect here: a crash loses the answer
                // (the next inquiry asks again); a delay is a slow network.
                try? await Failpoints.hit("participant.before-inquiry-answer")
                post(.learned(txid, answer, from: coordinator))
            } catch {
                logger.notice("in-doubt inquiry failed; asking again after the backoff",
                    metadata: ["txid": "\(txid)", "coordinator": "\(coordinator)", "error": "\(error)"])
            }
            let next = state.withLock { state -> (TxID, CoordinatorID)? in
                state.asking.remove(txid)
                guard !state.queue.isEmpty else {
                    state.running -= 1
                    return nil
                }
                return state.queue.removeFirst()
            }
            if let (txid, coordinator) = next { ask(txid, coordinator) }
        }
    }
}
