import ArbiterHTTP
import AsyncHTTPClient
import Dispatch
import Logging
import Synchronization

/// How an ``ArbiterClient`` carries concurrent submits to the coordinator in shared requests
/// (`POST /v1/transaction-batch`) instead of one HTTP exchange each.
///
/// The rule is the one the coordinator applies to its participants: one request *collecting* at a
/// time. A submit made while no request is collecting goes at once, alone (as a plain
/// `POST /v1/transactions`, on the client's kept-alive connections when it has them); submits made
/// while one is collecting wait for it and then go together. A request stops collecting when its first
/// answer arrives (the coordinator has taken the batch through its pipeline) or after
/// ``patience``, so a stalled request never holds the others back for long. Each transaction is
/// answered as soon as its own line arrives: a slow transaction does not delay the others of its
/// request.
///
/// A batch is not atomic: every transaction in it runs, and is answered, as if submitted alone.
/// A submit that is queued or sent waits for its answer even when its task is cancelled: the
/// transaction runs either way, and the answer is what tells the caller its outcome.
public struct SubmitBatching: Hashable, Sendable {
    /// How long a request collects before another may start beside it. Default 2 ms: under load a
    /// request's first answer takes a whole pass through the coordinator (a forced vote at each
    /// participant and the forced decision), and a shorter patience lets the next request start
    /// before that, so that the coordinator and the participants work on several requests at
    /// once. (In the bank benchmark at 64 clients, 2 ms gave more transfers/s than 10 ms.)
    public var patience: Duration
    /// The most transactions in one request. Default 256; at most the coordinator's
    /// batch limit (1024 by default).
    public var batchSizeMax: Int
    /// The most payload bytes in one request, counted as the branches' JSON text. Default 4 MiB,
    /// well inside the coordinator's 16 MiB limit on a batch's body; a transaction larger than
    /// this goes alone.
    public var batchBytesMax: Int
    /// The most requests collecting at once. Default 4.
    public var collectingMax: Int

    /// Makes a setting; the defaults are documented on the properties.
    public init(patience: Duration = .milliseconds(2), batchSizeMax: Int = 256, batchBytesMax: Int = 4 << 20, collectingMax: Int = 4) {
        precondition(batchSizeMax >= 1 && batchBytesMax >= 1 && collectingMax >= 1, "batchSizeMax, batchBytesMax and collectingMax must be at least 1")
        precondition(patience >= .zero, "patience must not be negative")
        self.patience = patience
        self.batchSizeMax = batchSizeMax
        self.batchBytesMax = batchBytesMax
        self.collectingMax = collectingMax
    }
}

/// The queue behind ``SubmitBatching``: submits wait here until a request takes them.
final class SubmitBatcher: Sendable {
    typealias Answer = Result<SubmitResponse, WireCallError>
    /// Sends one submit as a plain `POST /v1/transactions` (the client's own unbatched path).
    /// A submit on its own request; the third argument is its `traceparent` header.
    typealias PlainSubmit = @Sendable (SubmitRequest, Duration, String?) async throws(WireCallError) -> SubmitResponse

    private struct Waiting {
        var request: SubmitRequest
        /// The branches' payload and participant bytes, for ``SubmitBatching/batchBytesMax``.
        var size: Int
        var timeout: Duration
        var continuation: CheckedContinuation<Answer, Never>
    }

    private struct State {
        var queue: [Waiting] = []
        /// The requests sent whose first answer has not arrived, by number, with when they started.
        var collecting: [UInt64: ContinuousClock.Instant] = [:]
        /// Whether a wake-up is scheduled for the end of the newest request's patience.
        var wakeUpScheduled = false
        var requestCount: UInt64 = 0
        /// How many of them carried one transaction, as a plain submit.
        var loneCount: UInt64 = 0
    }

    private let settings: SubmitBatching
    private let url: String
    private let secret: BearerSecret
    private let plainSubmit: PlainSubmit
    private let httpClient: HTTPClient
    private let lineSizeMax: Int
    private let logger: Logger?
    private let state = Mutex(State())

    init(
        settings: SubmitBatching, url: String, plainSubmit: @escaping PlainSubmit, secret: BearerSecret, httpClient: HTTPClient,
        lineSizeMax: Int, logger: Logger?
    ) {
        self.settings = settings
        self.url = url
        self.plainSubmit = plainSubmit
        self.secret = secret
        self.httpClient = httpClient
        self.lineSizeMax = lineSizeMax
        self.logger = logger
    }

    /// How many requests have been sent: alone (plain submits) and batches.
    var requestCounts: (alone: Int, batches: Int) {
        state.withLock { (Int($0.loneCount), Int($0.requestCount - $0.loneCount)) }
    }

    /// Queues one submit and waits for its answer. `timeout` bounds the request that carries it.
    func submit(_ request: SubmitRequest, timeout: Duration) async -> Answer {
        await withCheckedContinuation { continuation in
            let size = request.branches.reduce(0) { $0 + $1.payload.bytes.count + $1.participant.utf8.count }
            state.withLock { $0.queue.append(Waiting(request: request, size: size, timeout: timeout, continuation: continuation)) }
            pump()
        }
    }

    /// Starts every request the rule allows now; when the rule holds submits back, schedules a
    /// wake-up for the end of the newest request's patience.
    private func pump() {
        while true {
            let now = ContinuousClock.now
            let next = state.withLock { state -> (number: UInt64, batch: [Waiting])? in
                guard !state.queue.isEmpty else { return nil }
                if let newest = state.collecting.values.max() {
                    let patienceEnd = newest + settings.patience
                    guard now >= patienceEnd, state.collecting.count < settings.collectingMax else {
                        if !state.wakeUpScheduled && now < patienceEnd {
                            state.wakeUpScheduled = true
                            scheduleWakeUp(after: patienceEnd - now)
                        }
                        return nil
                    }
                }
                // At least one transaction, then as many as fit the count and the bytes.
                var count = 1
                var bytes = state.queue[0].size
                while count < min(state.queue.count, settings.batchSizeMax),
                      bytes + state.queue[count].size <= settings.batchBytesMax {
                    bytes += state.queue[count].size
                    count += 1
                }
                let batch = Array(state.queue.prefix(count))
                state.queue.removeFirst(count)
                state.requestCount += 1
                if count == 1 { state.loneCount += 1 }
                state.collecting[state.requestCount] = now
                return (state.requestCount, batch)
            }
            guard let (number, batch) = next else { return }
            Task { await send(batch, number: number) }
        }
    }

    private func scheduleWakeUp(after delay: Duration) {
        let (seconds, attoseconds) = delay.components
        let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000) + 1
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) { [self] in
            state.withLock { $0.wakeUpScheduled = false }
            pump()
        }
    }

    /// A request has its first answer, or has ended: it no longer holds the others back.
    private func stoppedCollecting(_ number: UInt64) {
        let removed = state.withLock { $0.collecting.removeValue(forKey: number) != nil }
        if removed { pump() }
    }

    /// One request: answers each transaction as its line arrives, and any left unanswered with
    /// the request's error (or, when the stream ended early, an error a retry may fix).
    private func send(_ batch: [Waiting], number: UInt64) async {
        if batch.count == 1 {
            // Alone: the plain submit, whose answer is the outcome (no stream to set up and read).
            let answer: Answer
            do {
                answer = .success(try await plainSubmit(batch[0].request, batch[0].timeout, nil))
            } catch {
                answer = .failure(error)
            }
            stoppedCollecting(number)
            batch[0].continuation.resume(returning: answer)
            return
        }
        var answered = [Bool](repeating: false, count: batch.count)
        var firstLine = true
        let timeout = batch.map(\.timeout).max() ?? .seconds(30)
        let body = SubmitBatchRequest(transactions: batch.map(\.request))
        do {
            try await WireCall.streamLines(
                httpClient, url: url, body: body, secret: secret, timeout: timeout, lineSizeMax: lineSizeMax,
                as: SubmitBatchResult.self, logger: logger
            ) { result in
                if firstLine {
                    firstLine = false
                    stoppedCollecting(number)
                }
                guard batch.indices.contains(result.index), !answered[result.index] else { return }
                answered[result.index] = true
                batch[result.index].continuation.resume(returning: Self.answer(result))
            }
            stoppedCollecting(number)
            for index in batch.indices where !answered[index] {
                batch[index].continuation.resume(returning: .failure(WireCallError(
                    kind: .unreachable,
                    message: "\(url) ended the batch without answering transaction \(batch[index].request.id ?? "#\(index)")")))
            }
        } catch {
            stoppedCollecting(number)
            for index in batch.indices where !answered[index] {
                batch[index].continuation.resume(returning: .failure(error))
            }
        }
    }

    private static func answer(_ result: SubmitBatchResult) -> Answer {
        if let outcome = result.outcome, result.error == nil {
            return .success(SubmitResponse(id: result.id, outcome: outcome, reason: result.reason))
        }
        let detail = result.error ?? ErrorDetail(code: APIError.Code.internal.rawValue, message: "the coordinator gave neither an outcome nor an error")
        return .failure(WireCallError(kind: .rejected, message: detail.message, status: result.status ?? 500, detail: detail))
    }
}
