public import ArbiterCore
public import AsyncHTTPClient
public import Logging

/// The protocol's messages over HTTP: the coordinator's prepare, commit and abort to participants
/// (one at a time or batched), and a participant's in-doubt inquiry to the coordinator.
///
/// It translates between core messages and the wire, and checks that every answer is for the
/// transaction asked about. It does not retry: the protocol machines own retries and deadlines.
public struct ProtocolClient: Sendable {
    /// The client that carries the requests; its owner shuts it down.
    public let httpClient: HTTPClient
    /// Where batches to participants go when their URL is plain `http` (``sendBatch(_:to:timeout:)``).
    public let connections: HTTP1Connections?
    /// The credential for a destination's base URL; `nil`: nothing may be sent there.
    private let credentials: @Sendable (_ baseURL: String) -> BearerSecret?
    private let limits: WireLimits
    private let logger: Logger?

    /// - Parameters:
    ///   - httpClient: Made with ``HTTPClientSettings``; the caller shuts it down.
    ///   - secret: The protocol secret sent as the bearer token.
    ///   - connections: Kept-alive connections for the batches, the hot path (see
    ///     ``HTTP1Connections``); its owner shuts them down. Without them every request goes through
    ///     `httpClient`.
    ///   - limits: Bounds the size of the answers read (``WireLimits/bodySizeMax``, and
    ///     ``WireLimits/batchBodySizeMax`` for batches).
    public init(
        httpClient: HTTPClient, connections: HTTP1Connections? = nil, secret: BearerSecret, limits: WireLimits = .default,
        logger: Logger? = nil
    ) {
        self.init(httpClient: httpClient, connections: connections, credentials: { _ in secret }, limits: limits, logger: logger)
    }

    /// A client that presents to each destination its own credential.
    ///
    /// - Parameter credentials: The bearer secret for a destination's base URL, or `nil` when the
    ///   destination is not one to talk to (not registered): the call then fails as
    ///   ``WireCallError/Kind/unreachable`` without anything being sent, so the protocol retries it
    ///   later, when an operator may have registered the destination.
    public init(
        httpClient: HTTPClient, connections: HTTP1Connections? = nil,
        credentials: @escaping @Sendable (_ baseURL: String) -> BearerSecret?, limits: WireLimits = .default,
        logger: Logger? = nil
    ) {
        self.httpClient = httpClient
        self.connections = connections
        self.credentials = credentials
        self.limits = limits
        self.logger = logger
    }

    /// The credential for `base`, or the error that stops the call before anything is sent.
    private func secret(for base: String) throws(WireCallError) -> BearerSecret {
        guard let secret = credentials(base) else {
            throw WireCallError(kind: .unreachable, message: "\(base) is not a registered participant: nothing was sent; register it and reload the registry (SIGHUP)")
        }
        return secret
    }

    /// Sends one message to `participant` on its single-message endpoint and returns its answer:
    /// a vote or one-phase outcome for `prepare`, an acknowledgement for `commit` and `abort`.
    ///
    /// - Parameter traceparent: The transaction's W3C trace context, sent as the `traceparent` header.
    /// - Precondition: `message` is not ``CoordinatorMessage/outcome(_:_:)``.
    public func send(
        _ message: CoordinatorMessage, to participant: ParticipantID, timeout: Duration, traceparent: String? = nil
    ) async throws(WireCallError) -> ParticipantMessage {
        let base = participant.rawValue
        let secret = try secret(for: base)
        switch message {
        case .prepare(let request):
            let body = try wireBody { () throws(APIError) in try PrepareBody(request) }
            let reply = try await WireCall.call(
                httpClient, method: .POST, url: base + WireEndpoint.prepare.path, body: body, secret: secret,
                timeout: timeout, responseSizeMax: limits.bodySizeMax, as: PrepareReply.self, traceparent: traceparent, logger: logger
            )
            return try check({ () throws(APIError) in try reply.message() }, for: message, url: base)
        case .commit(let txid), .abort(let txid):
            let endpoint = message.isCommit ? WireEndpoint.commit : WireEndpoint.abort
            let reply = try await WireCall.call(
                httpClient, method: .POST, url: base + endpoint.path, body: DecisionBody(txid), secret: secret,
                timeout: timeout, responseSizeMax: limits.bodySizeMax, as: AcknowledgeReply.self, traceparent: traceparent,
                logger: logger
            )
            return try check({ () throws(APIError) in try reply.message() }, for: message, url: base)
        case .outcome:
            preconditionFailure("an outcome message answers an inquiry; it is not sent to a participant's endpoints")
        }
    }

    /// Sends many messages to `participant` in one `POST /v1/batch` and returns one result per
    /// message, in order: the participant's answer, or the error it reported for that message.
    ///
    /// - Parameter traceparents: Empty, or one W3C trace context per message: each goes in its
    ///   message's `traceparent` member, and when every message belongs to one transaction, in the
    ///   request's `traceparent` header too.
    /// - Precondition: `messages` holds 1...``WireLimits/batchMessageCountMax`` messages, none an
    ///   ``CoordinatorMessage/outcome(_:_:)``.
    public func sendBatch(
        _ messages: [CoordinatorMessage],
        to participant: ParticipantID,
        timeout: Duration,
        traceparents: [String?] = []
    ) async throws(WireCallError) -> [Result<ParticipantMessage, ErrorDetail>] {
        precondition(!messages.isEmpty && messages.count <= limits.batchMessageCountMax, "a batch holds 1...\(limits.batchMessageCountMax) messages")
        let base = participant.rawValue
        let secret = try secret(for: base)
        let body = try wireBody { () throws(APIError) in try BatchRequest(messages, traceparents: traceparents) }
        var header: String?
        if let first = traceparents.first, let value = first, messages.allSatisfy({ $0.txid == messages[0].txid }) {
            header = value
        }
        let response = try await WireCall.call(
            httpClient, connections: connections, method: .POST, url: base + WireEndpoint.batch.path, body: body, secret: secret,
            timeout: timeout, responseSizeMax: limits.batchBodySizeMax, as: BatchResponse.self, traceparent: header, logger: logger
        )
        guard response.replies.count == messages.count else {
            throw WireCallError(
                kind: .invalidResponse,
                message: "\(base) answered \(response.replies.count) replies to \(messages.count) messages"
            )
        }
        var results: [Result<ParticipantMessage, ErrorDetail>] = []
        results.reserveCapacity(messages.count)
        for (index, reply) in response.replies.enumerated() {
            let message = messages[index]
            let result = try decoded { () throws(APIError) in try reply.result(fieldPrefix: "replies[\(index)].") }
            switch result {
            case .success(let answer):
                results.append(.success(try check({ () throws(APIError) in answer }, for: message, url: base)))
            case .failure(let detail):
                guard reply.txid == message.txid.rawValue else {
                    throw mismatch(url: base, index: index, message: message)
                }
                results.append(.failure(detail))
            }
        }
        return results
    }

    /// Asks the coordinator at `coordinator` about an in-doubt transaction
    /// (`GET /v1/transactions/{id}/outcome`).
    ///
    /// - Parameter traceparent: The transaction's W3C trace context, sent as the `traceparent` header.
    public func inquire(
        _ txid: TxID, coordinator: CoordinatorID, timeout: Duration, traceparent: String? = nil
    ) async throws(WireCallError) -> InquiryAnswer {
        let base = coordinator.rawValue
        let secret = try secret(for: base)
        let response = try await WireCall.call(
            httpClient, method: .GET, url: base + "/v1/transactions/\(txid.rawValue)/outcome", body: nil, secret: secret,
            timeout: timeout, responseSizeMax: limits.bodySizeMax, as: OutcomeResponse.self, traceparent: traceparent, logger: logger
        )
        guard response.id == txid.rawValue else {
            throw WireCallError(kind: .invalidResponse, message: "\(base) answered about transaction \(response.id), not \(txid)")
        }
        return response.outcome.answer
    }

    // MARK: Helpers

    private func wireBody<T>(_ make: () throws(APIError) -> T) throws(WireCallError) -> T {
        do {
            return try make()
        } catch {
            throw WireCallError(kind: .invalidResponse, message: "cannot send the message: \(error.message)", cause: error)
        }
    }

    private func decoded<T>(_ make: () throws(APIError) -> T) throws(WireCallError) -> T {
        do {
            return try make()
        } catch {
            throw WireCallError(kind: .invalidResponse, message: "the answer does not follow the protocol: \(error.message)", cause: error)
        }
    }

    /// Converts an answer and checks that it answers `message`: same transaction, right kind.
    private func check(
        _ convert: () throws(APIError) -> ParticipantMessage,
        for message: CoordinatorMessage,
        url: String
    ) throws(WireCallError) -> ParticipantMessage {
        let answer = try decoded(convert)
        let fits: Bool
        switch (message, answer) {
        case (.prepare(let request), .vote): fits = !request.onePhase
        case (.prepare(let request), .onePhaseOutcome): fits = request.onePhase
        case (.commit, .acknowledge), (.abort, .acknowledge): fits = true
        default: fits = false
        }
        guard fits, answer.txid == message.txid else {
            throw WireCallError(kind: .invalidResponse, message: "\(url) answered \(answer) to \(message)")
        }
        return answer
    }

    private func mismatch(url: String, index: Int, message: CoordinatorMessage) -> WireCallError {
        WireCallError(kind: .invalidResponse, message: "\(url)'s reply \(index) is not about transaction \(message.txid)")
    }
}

extension CoordinatorMessage {
    fileprivate var isCommit: Bool {
        if case .commit = self { return true }
        return false
    }
}
