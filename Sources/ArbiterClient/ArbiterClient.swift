public import ArbiterCore
public import ArbiterHTTP
public import AsyncHTTPClient
public import Logging
import NIOHTTP1
import Foundation
import Synchronization
import Tracing

/// A typed client for the coordinator's HTTP API.
///
/// ```swift
/// let http = HTTPClientSettings().makeClient()
/// defer { try? await http.shutdown() }   // or shut it down when your service stops
/// let client = ArbiterClient(
///     coordinator: "http://127.0.0.1:8080",
///     secret: try BearerSecret.read(fromFile: "/etc/arbiter/client-token"),
///     httpClient: http
/// )
/// // Participants by the names the coordinator's registry gives them (or their registered URLs).
/// let result = try await client.submit(branches: [
///     Branch(participant: ParticipantID("bank-a"), payload: Payload(#"{"op":"debit","account":"alice","amount":100}"#)),
///     Branch(participant: ParticipantID("bank-b"), payload: Payload(#"{"op":"credit","account":"bob","amount":100}"#)),
/// ])
/// ```
///
/// For an `https` coordinator, make the HTTP client and the connections with the same
/// ``ClientTLS`` (the CA to trust, the client certificate to present):
/// `HTTPClientSettings().makeClient(tls: tls)` and `HTTP1Connections(tls: tls)`.
///
/// Calls that fail for want of an answer (connection errors, timeouts, 5xx) are retried with
/// backoff per ``RetryPolicy``. A submit always carries a transaction id, made here when the caller
/// gives none, so that a retry is the same transaction and not a second one.
///
/// A client of a coordinator cluster (several coordinators on one shared decision store) is made
/// with ``init(coordinators:secret:operatorSecret:httpClient:connections:retry:requestTimeout:responseSizeMax:batching:logger:)``:
/// calls go to one coordinator until it fails without an answer, then to the next. Sending a
/// submission again to another coordinator is safe: the id makes it the same transaction, and the
/// shared store answers it from the first coordinator's record.
public struct ArbiterClient: Sendable {
    /// The base URLs of the coordinators, without trailing slashes, in the order they are tried.
    public let coordinators: [String]
    /// The first coordinator's base URL.
    public var coordinator: String { coordinators[0] }
    private let secret: BearerSecret
    private let operatorSecret: BearerSecret?
    private let httpClient: HTTPClient
    private let retry: RetryPolicy
    private let requestTimeout: Duration
    private let responseSizeMax: Int
    private let logger: Logger?
    /// One per coordinator, in ``coordinators``' order.
    private let endpoints: [Endpoint]
    /// The coordinator calls go to now: the next one after a call to it failed without an answer.
    private let rotation: Rotation

    /// What the client sends to one coordinator.
    private struct Endpoint: Sendable {
        /// Its base URL, without a trailing slash.
        let base: String
        /// One submit as a plain request (`POST /v1/transactions`): the unbatched path, and a
        /// batching client's lone submits.
        let plainSubmit: SubmitBatcher.PlainSubmit
        let batcher: SubmitBatcher?
    }

    /// - Parameters:
    ///   - coordinator: The coordinator's base URL (`http://host:port`).
    ///   - secret: A client token of the coordinator's `--client-secret-file` (the protocol secret
    ///     when the coordinator runs in the single-secret mode).
    ///   - operatorSecret: The operator secret, needed by ``list(state:limit:after:)`` only.
    ///   - httpClient: Made with ``HTTPClientSettings``; the caller shuts it down.
    ///   - connections: When given, submits to an `http` or `https` coordinator go on these kept-alive
    ///     connections instead of `httpClient`: one write per request, and no hop to another thread
    ///     when the caller runs on an event loop (``HTTP1Connections``). The caller shuts them down.
    ///   - retry: How failures without an answer are retried.
    ///   - requestTimeout: The deadline of one attempt. A submit's attempt is given at least its
    ///     transaction timeout plus 5 s, so that the coordinator can answer before the client gives up.
    ///   - responseSizeMax: The largest answer read, in bytes. Default 16 MiB.
    ///   - batching: When set, concurrent submits share requests (`POST /v1/transaction-batch`)
    ///     as ``SubmitBatching`` describes; each is still answered on its own. Worth it when one
    ///     process submits many transactions at once; `nil` (the default) sends one request each.
    public init(
        coordinator: String,
        secret: BearerSecret,
        operatorSecret: BearerSecret? = nil,
        httpClient: HTTPClient,
        connections: HTTP1Connections? = nil,
        retry: RetryPolicy = RetryPolicy(),
        requestTimeout: Duration = .seconds(30),
        responseSizeMax: Int = 16 << 20,
        batching: SubmitBatching? = nil,
        logger: Logger? = nil
    ) {
        self.init(
            coordinators: [coordinator], secret: secret, operatorSecret: operatorSecret, httpClient: httpClient,
            connections: connections, retry: retry, requestTimeout: requestTimeout, responseSizeMax: responseSizeMax,
            batching: batching, logger: logger
        )
    }

    /// A client of a coordinator cluster: the same parameters as
    /// ``init(coordinator:secret:operatorSecret:httpClient:connections:retry:requestTimeout:responseSizeMax:batching:logger:)``,
    /// with the coordinators' base URLs.
    ///
    /// Calls go to the first coordinator until a call to it fails without an answer (refused,
    /// reset, timed out, 5xx); that call's next attempt, and later calls, go to the next
    /// coordinator, round the list. The first attempt at each coordinator a call has not tried yet
    /// is sent at once; only a coordinator tried again waits for ``RetryPolicy/backoff``. So
    /// `retry.attemptCountMax` should be at least the number of coordinators (the default, 4, suits
    /// up to three).
    ///
    /// - Precondition: `coordinators` is not empty.
    public init(
        coordinators: [String],
        secret: BearerSecret,
        operatorSecret: BearerSecret? = nil,
        httpClient: HTTPClient,
        connections: HTTP1Connections? = nil,
        retry: RetryPolicy = RetryPolicy(),
        requestTimeout: Duration = .seconds(30),
        responseSizeMax: Int = 16 << 20,
        batching: SubmitBatching? = nil,
        logger: Logger? = nil
    ) {
        precondition(!coordinators.isEmpty, "an ArbiterClient needs at least one coordinator URL")
        let bases = coordinators.map { url in
            var base = Substring(url)
            while base.hasSuffix("/") { base = base.dropLast() }
            return String(base)
        }
        self.coordinators = bases
        self.secret = secret
        self.operatorSecret = operatorSecret
        self.httpClient = httpClient
        self.retry = retry
        self.requestTimeout = requestTimeout
        self.responseSizeMax = responseSizeMax
        self.logger = logger
        self.rotation = Rotation()
        self.endpoints = bases.map { base in
            let submitURL = base + WireEndpoint.submit.path
            let plainSubmit: SubmitBatcher.PlainSubmit = { body, timeout, traceparent throws(WireCallError) in
                try await WireCall.call(
                    httpClient, connections: connections, method: .POST, url: submitURL, body: body, secret: secret,
                    timeout: timeout, responseSizeMax: responseSizeMax, as: SubmitResponse.self, traceparent: traceparent,
                    logger: logger
                )
            }
            let batcher = batching.map {
                SubmitBatcher(settings: $0, url: base + WireEndpoint.submitBatch.path, plainSubmit: plainSubmit,
                              secret: secret, httpClient: httpClient, lineSizeMax: responseSizeMax, logger: logger)
            }
            return Endpoint(base: base, plainSubmit: plainSubmit, batcher: batcher)
        }
    }

    /// How many submit requests this client has sent with ``SubmitBatching``: alone (plain submits)
    /// and batches.
    var submitRequestCounts: (alone: Int, batches: Int) {
        var sum = (alone: 0, batches: 0)
        for endpoint in endpoints {
            let counts = endpoint.batcher?.requestCounts ?? (alone: 0, batches: 0)
            sum = (sum.alone + counts.alone, sum.batches + counts.batches)
        }
        return sum
    }

    /// Runs a transaction and returns its outcome.
    ///
    /// - Parameters:
    ///   - branches: One per participant; each payload must be one JSON value.
    ///   - id: The transaction id, an idempotency key: submitting an id again returns the recorded
    ///     outcome. When `nil`, the client makes a unique one (``makeTransactionID()``).
    ///   - timeout: How long the coordinator may collect votes; its default when `nil`.
    ///   - wait: Answer at the decision (default) or once phase 2 has completed.
    /// The transaction joins the caller's trace: when the task's `ServiceContext` has a span (or a
    /// ``TraceParent`` set as `context.traceParent`), the request carries its W3C `traceparent`,
    /// and so does every protocol message the transaction causes. A traced submit is sent alone,
    /// not in a ``SubmitBatching`` batch, so that it keeps its own header.
    ///
    /// - Throws: ``ArbiterClientError``; `invalid_request` without sending anything when a payload is
    ///   not JSON. When ``ArbiterClientError/isOutcomeUncertain`` holds, submit the same id again.
    public func submit(
        branches: [Branch],
        id: TxID? = nil,
        timeout: Duration? = nil,
        wait: WaitMode = .decision
    ) async throws(ArbiterClientError) -> SubmitResult {
        let txid = id ?? ArbiterClient.makeTransactionID()
        let body: SubmitRequest
        do {
            body = try SubmitRequest(id: txid, branches: branches, timeout: timeout, wait: wait)
        } catch {
            throw ArbiterClientError(code: .invalidRequest, message: error.message, field: error.field, cause: error)
        }
        let attemptTimeout = max(requestTimeout, (timeout ?? .seconds(5)) + .seconds(5))
        let traceparent = ServiceContext.current.flatMap { WireTracing.traceparent(for: $0) }
        let response = try await withRetries { endpoint async throws(WireCallError) -> SubmitResponse in
            if let batcher = endpoint.batcher, traceparent == nil {
                return try await batcher.submit(body, timeout: attemptTimeout).get()
            }
            return try await endpoint.plainSubmit(body, attemptTimeout, traceparent)
        }
        guard response.id == txid.rawValue else {
            throw ArbiterClientError(
                code: .invalidResponse,
                message: "the coordinator answered about transaction \(response.id), not \(txid)"
            )
        }
        return SubmitResult(id: txid, outcome: response.outcome.outcome, reason: response.reason)
    }

    /// A transaction's state, branches, votes, acknowledgements and times.
    ///
    /// - Throws: ``ArbiterClientError`` `not_found` when the coordinator does not know the id.
    public func transaction(_ id: TxID) async throws(ArbiterClientError) -> TransactionView {
        try await withRetries { endpoint async throws(WireCallError) -> TransactionView in
            try await WireCall.call(
                httpClient, method: .GET, url: endpoint.base + "/v1/transactions/\(id.rawValue)", body: nil,
                secret: secret, timeout: requestTimeout, responseSizeMax: responseSizeMax, as: TransactionView.self,
                logger: logger
            )
        }
    }

    /// One page of the operators' listing, oldest first. Needs the operator secret.
    ///
    /// - Parameters:
    ///   - state: Only transactions in this state.
    ///   - limit: The page size; the coordinator's default (100) when `nil`.
    ///   - after: The previous page's ``TransactionPage/next``, an opaque cursor.
    public func list(state: TransactionState? = nil, limit: Int? = nil, after: String? = nil) async throws(ArbiterClientError) -> TransactionPage {
        var items: [String] = []
        if let state { items.append("state=\(state.rawValue)") }
        if let limit { items.append("limit=\(limit)") }
        if let after { items.append("after=\(PercentEncoding.encoded(after))") }
        let query = items.isEmpty ? "" : "?" + items.joined(separator: "&")
        let token = operatorSecret ?? secret
        return try await withRetries { endpoint async throws(WireCallError) -> TransactionPage in
            try await WireCall.call(
                httpClient, method: .GET, url: endpoint.base + WireEndpoint.list.path + query, body: nil,
                secret: token, timeout: requestTimeout, responseSizeMax: responseSizeMax, as: TransactionPage.self,
                logger: logger
            )
        }
    }

    /// Transactions not ended at least `olderThanMs` after they were first recorded, oldest first,
    /// with the participants that owe them a vote or an acknowledgement (needs the operator token).
    public func stuck(olderThanMs: Int64 = 0, limit: Int? = nil) async throws(ArbiterClientError) -> StuckList {
        let query = "?olderThanMs=\(olderThanMs)" + (limit.map { "&limit=\($0)" } ?? "")
        let token = operatorSecret ?? secret
        return try await withRetries { endpoint async throws(WireCallError) -> StuckList in
            try await WireCall.call(
                httpClient, method: .GET, url: endpoint.base + WireEndpoint.operatorStuck.path + query, body: nil,
                secret: token, timeout: requestTimeout, responseSizeMax: responseSizeMax, as: StuckList.self, logger: logger)
        }
    }

    /// Resends the decision of `id` now to the participants that have not acknowledged it, without
    /// waiting for the coordinator's backoff (needs the operator token; audited with `reason`).
    /// Not retried on failure: an operator's action runs once per call.
    public func retryPhaseTwo(_ id: TxID, reason: String) async throws(ArbiterClientError) -> RetryResponse {
        let token = operatorSecret ?? secret
        let endpoint = endpoints[rotation.current(of: endpoints.count)]
        do {
            return try await WireCall.call(
                httpClient, method: .POST, url: endpoint.base + "/v1/operator/transactions/\(id.rawValue)/retry",
                body: RetryRequest(reason: reason), secret: token, timeout: requestTimeout, responseSizeMax: responseSizeMax,
                as: RetryResponse.self, logger: logger)
        } catch {
            throw ArbiterClientError(error, attemptCount: 1)
        }
    }

    /// The coordinator's operator audit trail, newest first (needs the operator token).
    public func operatorAudit(limit: Int? = nil, before: Int64? = nil) async throws(ArbiterClientError) -> OperatorAuditTrail {
        var items: [String] = []
        if let limit { items.append("limit=\(limit)") }
        if let before { items.append("before=\(before)") }
        let query = items.isEmpty ? "" : "?" + items.joined(separator: "&")
        let token = operatorSecret ?? secret
        return try await withRetries { endpoint async throws(WireCallError) -> OperatorAuditTrail in
            try await WireCall.call(
                httpClient, method: .GET, url: endpoint.base + WireEndpoint.operatorAudit.path + query, body: nil,
                secret: token, timeout: requestTimeout, responseSizeMax: responseSizeMax, as: OperatorAuditTrail.self, logger: logger)
        }
    }

    /// The coordinator's answer to an in-doubt inquiry: `committed`, `aborted` (also for an
    /// unknown id: presumed abort) or `pending`.
    ///
    /// This is the participants' question, and it needs a participant's credential: a coordinator
    /// with client tokens answers a client token here with 403 `forbidden`. Asked about an id it
    /// has no record of, the coordinator records it as aborted, and a later submit of that id is
    /// answered `aborted`. To learn a
    /// transaction's outcome as a client, submit it again with the same id, or use
    /// ``transaction(_:)``: a one-phase transaction's record at the coordinator is not forced, so
    /// after a crash the coordinator may not know one it reported committed.
    public func outcome(_ id: TxID) async throws(ArbiterClientError) -> InquiryAnswer {
        let response = try await withRetries { endpoint async throws(WireCallError) -> OutcomeResponse in
            try await WireCall.call(
                httpClient, method: .GET, url: endpoint.base + "/v1/transactions/\(id.rawValue)/outcome", body: nil,
                secret: secret, timeout: requestTimeout, responseSizeMax: responseSizeMax, as: OutcomeResponse.self,
                logger: logger
            )
        }
        guard response.id == id.rawValue else {
            throw ArbiterClientError(code: .invalidResponse, message: "the coordinator answered about transaction \(response.id), not \(id)")
        }
        return response.outcome.answer
    }

    /// A fresh transaction id, unique without coordination and ordered by time: `c-`, 12 hex digits
    /// of the Unix time in milliseconds, then 20 hex digits (80 random bits) — the layout of a
    /// UUIDv7.
    ///
    /// Why time first: the coordinator and every participant keep a B-tree index on the id. Random
    /// ids land on a random leaf page each, so a batch of N transactions dirties N pages of it, and
    /// each dirty page is 4 KiB more to write and fsync. Ids made in the same millisecond or the
    /// next land on the same few pages at the index's right edge.
    public static func makeTransactionID() -> TxID {
        makeTransactionID(millisecondsSinceEpoch: UInt64(max(0, Date().timeIntervalSince1970 * 1000)))
    }

    static func makeTransactionID(millisecondsSinceEpoch milliseconds: UInt64) -> TxID {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        func hex(_ value: UInt64, digits: Int) -> String {
            let text = String(value, radix: 16)
            return String(repeating: "0", count: max(0, digits - text.count)) + text
        }
        // 48 bits of time (good until the year 10889), 16 + 64 random bits.
        let time = hex(milliseconds & 0xFFFF_FFFF_FFFF, digits: 12)
        // Only [0-9a-f-] characters: always a valid id.
        return try! TxID("c-" + time + hex(high & 0xFFFF, digits: 4) + hex(low, digits: 16))
    }

    /// Runs `attempt` until it succeeds, fails in a way a retry cannot fix, or the policy's
    /// attempts are used up. An attempt that fails without an answer moves the client to the next
    /// coordinator; the first attempt at a coordinator this call has not tried yet goes at once.
    private func withRetries<T>(_ attempt: (Endpoint) async throws(WireCallError) -> T) async throws(ArbiterClientError) -> T {
        var random = SystemRandomNumberGenerator()
        var attemptCount = 0
        var index = rotation.current(of: endpoints.count)
        var tried: Set<Int> = []
        while true {
            attemptCount += 1
            tried.insert(index)
            do {
                return try await attempt(endpoints[index])
            } catch {
                guard error.isRetryable, attemptCount < retry.attemptCountMax else {
                    throw ArbiterClientError(error, attemptCount: attemptCount)
                }
                if endpoints.count > 1 {
                    index = rotation.failed(index, of: endpoints.count)
                    if !tried.contains(index) {
                        logger?.debug(
                            "trying the next coordinator",
                            metadata: ["attempt": "\(attemptCount)", "coordinator": "\(endpoints[index].base)", "error": "\(error.message)"]
                        )
                        continue
                    }
                }
                let delay = retry.backoff.delay(attempt: attemptCount - tried.count, random: &random)
                logger?.debug(
                    "retrying a call to the coordinator",
                    metadata: ["attempt": "\(attemptCount)", "delay": "\(delay)", "error": "\(error.message)"]
                )
                do {
                    try await Task.sleep(for: delay)
                } catch {
                    throw ArbiterClientError(code: .cancelled, message: "cancelled while waiting to retry", attemptCount: attemptCount, cause: error)
                }
            }
        }
    }
}

/// Which coordinator an ``ArbiterClient`` and its copies call now, shared by all of them.
private final class Rotation: Sendable {
    private let index = Mutex(0)

    func current(of count: Int) -> Int {
        index.withLock { $0 % count }
    }

    /// The coordinator to call after `failed` did not answer: the next one, unless another call
    /// has already moved on from `failed`.
    func failed(_ failed: Int, of count: Int) -> Int {
        index.withLock { index in
            if index % count == failed { index = (failed + 1) % count }
            return index % count
        }
    }
}

/// A transaction's id and outcome, as ``ArbiterClient/submit(branches:id:timeout:wait:)`` returns it.
public struct SubmitResult: Hashable, Sendable {
    /// The transaction id.
    public var id: TxID
    /// The transaction's outcome.
    public var outcome: Outcome
    /// Why the transaction aborted, for people.
    public var reason: String?

    /// Makes a result.
    public init(id: TxID, outcome: Outcome, reason: String? = nil) {
        self.id = id
        self.outcome = outcome
        self.reason = reason
    }
}

/// How ``ArbiterClient`` retries a call that got no usable answer (connection error, timeout, 5xx).
public struct RetryPolicy: Hashable, Sendable {
    /// The most attempts per call, the first included. 1 disables retries. Default 4.
    public var attemptCountMax: Int
    /// The delay before each retry. Default 50 ms doubling to 2 s, 20 % jitter.
    public var backoff: Backoff

    /// Makes a policy; the defaults are documented on the properties.
    public init(attemptCountMax: Int = 4, backoff: Backoff = Backoff(initial: .milliseconds(50), max: .seconds(2))) {
        precondition(attemptCountMax >= 1, "attemptCountMax must be at least 1")
        self.attemptCountMax = attemptCountMax
        self.backoff = backoff
    }

    /// No retries.
    public static let none = RetryPolicy(attemptCountMax: 1)
}
