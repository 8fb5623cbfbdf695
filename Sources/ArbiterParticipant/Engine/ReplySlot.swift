import ArbiterCore
import ArbiterHTTP
import Synchronization

/// What a request waiting on the engine gets back.
enum SlotResult: Sendable {
    /// The machine's answer to the message.
    case answer(ParticipantMessage)
    /// The forced records of a heuristic decision are durable.
    case durable
    /// No answer: the reply deadline passed, the node is stopping, or the request was refused.
    case failed(APIError)
}

/// One request's place in the queue of answers: a one-shot promise that the engine resolves, under
/// its lock, when the machine emits the message the request waits for.
final class ReplySlot: Sendable {
    /// What a slot waits for.
    enum Kind: Sendable {
        /// A vote, or a one-phase outcome (`prepare`).
        case vote
        /// An acknowledgement (`commit`, `abort`).
        case acknowledgement
        /// The `forced` event of the transaction (an operator's heuristic decision).
        case durable
    }

    let id: UInt64
    let txid: TxID
    let kind: Kind
    private let state = Mutex<State>(State())

    private struct State {
        var result: SlotResult?
        var continuation: CheckedContinuation<SlotResult, Never>?
    }

    init(id: UInt64, txid: TxID, kind: Kind) {
        self.id = id
        self.txid = txid
        self.kind = kind
    }

    /// Whether `message` answers this slot.
    func accepts(_ message: ParticipantMessage) -> Bool {
        switch (kind, message) {
        case (.vote, .vote), (.vote, .onePhaseOutcome), (.acknowledgement, .acknowledge): return true
        default: return false
        }
    }

    /// Resolves the slot; later calls are ignored (the first answer wins).
    func resolve(_ result: SlotResult) {
        let continuation = state.withLock { state -> CheckedContinuation<SlotResult, Never>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(returning: result)
    }

    /// Waits for the result. A cancelled waiter gets `unavailable` at once.
    func wait() async -> SlotResult {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<SlotResult, Never>) in
                let ready = state.withLock { state -> SlotResult? in
                    if let result = state.result { return result }
                    state.continuation = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            resolve(.failed(.unavailable("the request was cancelled before its answer was ready; retry it")))
        }
    }
}
