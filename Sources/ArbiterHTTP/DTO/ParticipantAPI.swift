public import ArbiterCore

// The participant API's bodies (see schemas/openapi.yaml): what the coordinator sends a participant
// and what the participant answers, with their mappings to `CoordinatorMessage` and
// `ParticipantMessage`.

/// `POST /v1/prepare` request: `{txid, coordinator, payload, onePhase?, traceparent?}`.
public struct PrepareBody: Codable, Hashable, Sendable {
    /// The transaction id.
    public var txid: String
    /// The coordinator's base URL, where the participant sends its in-doubt inquiries.
    public var coordinator: String
    /// The branch's payload, byte for byte.
    public var payload: RawJSON
    /// `true` when the transaction has this one participant: prepare and commit in one local
    /// transaction and answer with the outcome. Absent means `false`.
    public var onePhase: Bool?
    /// The W3C `traceparent` of the transaction's trace (see ``TraceParent``). It matters in a
    /// batch, where one HTTP request carries many transactions' messages; a single-message request
    /// carries it in its `traceparent` header, which wins.
    public var traceparent: String?

    /// Makes a value from its members, as they travel on the wire.
    public init(txid: String, coordinator: String, payload: RawJSON, onePhase: Bool? = nil, traceparent: String? = nil) {
        self.txid = txid
        self.coordinator = coordinator
        self.payload = payload
        self.onePhase = onePhase
        self.traceparent = traceparent
    }

    /// The wire form of a core prepare request. `onePhase` is sent only when `true`.
    ///
    /// - Throws: ``APIError`` `invalid_json` when the payload's bytes are not one JSON value.
    public init(_ request: PrepareRequest) throws(APIError) {
        self.init(
            txid: request.txid.rawValue,
            coordinator: request.coordinator.rawValue,
            payload: try RawJSON(request.payload),
            onePhase: request.onePhase ? true : nil
        )
    }

    /// Checks the request and returns the core request. `fieldPrefix` names the body's place in a
    /// batch (`messages[3].`) so that errors point at the right message.
    public func validated(limits: WireLimits, fieldPrefix: String = "") throws(APIError) -> PrepareRequest {
        let txid = try WireValidation.txid(self.txid, field: fieldPrefix + "txid")
        let coordinator = try WireValidation.serviceURL(self.coordinator, field: fieldPrefix + "coordinator", limits: limits)
        let payload = try WireValidation.payload(self.payload, field: fieldPrefix + "payload", limits: limits)
        return PrepareRequest(
            txid: txid,
            coordinator: CoordinatorID(coordinator),
            payload: payload,
            onePhase: onePhase ?? false
        )
    }
}

/// `POST /v1/prepare` response: `{txid, vote, reason?}`, or `{txid, outcome}` for a one-phase prepare.
public enum PrepareReply: Codable, Hashable, Sendable {
    /// The participant's vote; `reason` goes with `no` (and is ignored otherwise).
    case vote(txid: String, vote: WireVote, reason: String?)
    /// The outcome of a one-phase prepare, durable at the participant.
    case outcome(txid: String, outcome: WireOutcome)

    private enum CodingKeys: String, CodingKey {
        case txid, vote, reason, outcome
    }

    /// The transaction id.
    public var txid: String {
        switch self {
        case .vote(let txid, _, _), .outcome(let txid, _): return txid
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let txid = try container.decode(String.self, forKey: .txid)
        let vote = try container.decodeIfPresent(WireVote.self, forKey: .vote)
        let outcome = try container.decodeIfPresent(WireOutcome.self, forKey: .outcome)
        switch (vote, outcome) {
        case (let vote?, nil):
            self = .vote(txid: txid, vote: vote, reason: try container.decodeIfPresent(String.self, forKey: .reason))
        case (nil, let outcome?):
            self = .outcome(txid: txid, outcome: outcome)
        case (nil, nil):
            throw DecodingError.keyNotFound(
                CodingKeys.vote,
                .init(codingPath: decoder.codingPath, debugDescription: "a prepare reply needs `vote` (or `outcome` for one-phase)")
            )
        case (_?, _?):
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath + [CodingKeys.outcome], debugDescription: "a prepare reply has either `vote` or `outcome`, not both")
            )
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .vote(let txid, let vote, let reason):
            try container.encode(txid, forKey: .txid)
            try container.encode(vote, forKey: .vote)
            try container.encodeIfPresent(reason, forKey: .reason)
        case .outcome(let txid, let outcome):
            try container.encode(txid, forKey: .txid)
            try container.encode(outcome, forKey: .outcome)
        }
    }

    /// The reply for a participant's ``ParticipantMessage/vote(_:_:)`` or
    /// ``ParticipantMessage/onePhaseOutcome(_:_:)``; `nil` for other messages.
    public init?(_ message: ParticipantMessage) {
        switch message {
        case .vote(let txid, .yes):
            self = .vote(txid: txid.rawValue, vote: .yes, reason: nil)
        case .vote(let txid, .no(let reason)):
            self = .vote(txid: txid.rawValue, vote: .no, reason: reason.isEmpty ? nil : reason)
        case .vote(let txid, .readOnly):
            self = .vote(txid: txid.rawValue, vote: .readOnly, reason: nil)
        case .onePhaseOutcome(let txid, let outcome):
            self = .outcome(txid: txid.rawValue, outcome: WireOutcome(outcome))
        case .acknowledge, .inquire:
            return nil
        }
    }

    /// The core message this reply stands for. A `no` without a reason gets `"no reason given"`.
    public func message(fieldPrefix: String = "") throws(APIError) -> ParticipantMessage {
        switch self {
        case .vote(let txid, let vote, let reason):
            let id = try WireValidation.txid(txid, field: fieldPrefix + "txid")
            switch vote {
            case .yes: return .vote(id, .yes)
            case .no: return .vote(id, .no(reason: reason ?? "no reason given"))
            case .readOnly: return .vote(id, .readOnly)
            }
        case .outcome(let txid, let outcome):
            return .onePhaseOutcome(try WireValidation.txid(txid, field: fieldPrefix + "txid"), outcome.outcome)
        }
    }
}

/// `POST /v1/commit` and `POST /v1/abort` request: `{txid, traceparent?}`.
public struct DecisionBody: Codable, Hashable, Sendable {
    /// The transaction id.
    public var txid: String
    /// The W3C `traceparent` of the transaction's trace, as in ``PrepareBody/traceparent``.
    public var traceparent: String?

    /// A body for the transaction id `txid`.
    public init(txid: String, traceparent: String? = nil) {
        self.txid = txid
        self.traceparent = traceparent
    }
    /// A body for a core transaction id.
    public init(_ txid: TxID, traceparent: String? = nil) {
        self.txid = txid.rawValue
        self.traceparent = traceparent
    }

    /// Checks the id.
    public func validated(fieldPrefix: String = "") throws(APIError) -> TxID {
        try WireValidation.txid(txid, field: fieldPrefix + "txid")
    }
}

/// `POST /v1/commit` and `POST /v1/abort` response: `{txid, state}`, what the participant durably holds.
public struct AcknowledgeReply: Codable, Hashable, Sendable {
    /// The transaction id.
    public var txid: String
    /// What the participant durably holds for the transaction.
    public var state: WireLocalOutcome

    /// Makes a value from its members, as they travel on the wire.
    public init(txid: String, state: WireLocalOutcome) {
        self.txid = txid
        self.state = state
    }

    /// The reply for a participant's ``ParticipantMessage/acknowledge(_:_:)``; `nil` otherwise.
    public init?(_ message: ParticipantMessage) {
        guard case .acknowledge(let txid, let outcome) = message else { return nil }
        self.init(txid: txid.rawValue, state: WireLocalOutcome(outcome))
    }

    /// The core message this reply stands for.
    public func message(fieldPrefix: String = "") throws(APIError) -> ParticipantMessage {
        .acknowledge(try WireValidation.txid(txid, field: fieldPrefix + "txid"), state.localOutcome)
    }
}

/// The `error` member of every error response: `{code, message, field?}`.
public struct ErrorDetail: Codable, Hashable, Sendable {
    /// The stable, machine-readable error code (see ``APIError/Code``).
    public var code: String
    /// What is wrong, for people.
    public var message: String
    /// The offending field's path, or a path or query parameter's name.
    public var field: String?

    /// Makes a value from its members, as they travel on the wire.
    public init(code: String, message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
    }

    /// The detail of an ``APIError``.
    public init(_ error: APIError) {
        self.init(code: error.code.rawValue, message: error.message, field: error.field)
    }
}

/// Every error response's body: `{"error": {"code", "message", "field"?}}`.
public struct ErrorResponse: Codable, Hashable, Sendable {
    /// The error.
    public var error: ErrorDetail

    /// Wraps an error detail.
    public init(error: ErrorDetail) { self.error = error }
    /// The body of an ``APIError``.
    public init(_ error: APIError) { self.error = ErrorDetail(error) }
}

// MARK: Batch

/// The kind of a batched message, its `type` member.
public enum BatchMessageType: String, WireEnum {
    case prepare
    case commit
    case abort
}

/// One message of `POST /v1/batch`: a prepare, commit or abort body with a `type` member.
public enum BatchMessage: Codable, Hashable, Sendable {
    case prepare(PrepareBody)
    case commit(DecisionBody)
    case abort(DecisionBody)

    private enum CodingKeys: String, CodingKey { case type }

    /// The message's `type` member.
    public var type: BatchMessageType {
        switch self {
        case .prepare: return .prepare
        case .commit: return .commit
        case .abort: return .abort
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        switch try container.decode(BatchMessageType.self, forKey: .type) {
        case .prepare: self = .prepare(try PrepareBody(from: decoder))
        case .commit: self = .commit(try DecisionBody(from: decoder))
        case .abort: self = .abort(try DecisionBody(from: decoder))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(type, forKey: .type)
        switch self {
        case .prepare(let body): try body.encode(to: encoder)
        case .commit(let body), .abort(let body): try body.encode(to: encoder)
        }
    }

    /// The wire form of a core message. Only prepare, commit and abort travel to participants;
    /// ``CoordinatorMessage/outcome(_:_:)`` is the answer to an inquiry and gives `nil`.
    ///
    /// - Throws: ``APIError`` `invalid_json` when a prepare's payload is not one JSON value.
    public init?(_ message: CoordinatorMessage, traceparent: String? = nil) throws(APIError) {
        switch message {
        case .prepare(let request):
            var body = try PrepareBody(request)
            body.traceparent = traceparent
            self = .prepare(body)
        case .commit(let txid): self = .commit(DecisionBody(txid, traceparent: traceparent))
        case .abort(let txid): self = .abort(DecisionBody(txid, traceparent: traceparent))
        case .outcome: return nil
        }
    }

    /// The message's `traceparent` member.
    public var traceparent: String? {
        switch self {
        case .prepare(let body): return body.traceparent
        case .commit(let body), .abort(let body): return body.traceparent
        }
    }

    /// Checks the message and returns the core message.
    public func validated(limits: WireLimits, fieldPrefix: String = "") throws(APIError) -> CoordinatorMessage {
        switch self {
        case .prepare(let body): return .prepare(try body.validated(limits: limits, fieldPrefix: fieldPrefix))
        case .commit(let body): return .commit(try body.validated(fieldPrefix: fieldPrefix))
        case .abort(let body): return .abort(try body.validated(fieldPrefix: fieldPrefix))
        }
    }
}

/// `POST /v1/batch` request: `{messages: [...]}`, many transactions' messages to one participant.
public struct BatchRequest: Codable, Hashable, Sendable {
    /// The messages, handled in order.
    public var messages: [BatchMessage]

    /// Makes a value from its members, as they travel on the wire.
    public init(messages: [BatchMessage]) { self.messages = messages }

    /// The wire form of core messages.
    ///
    /// - Throws: ``APIError`` `invalid_value` for an ``CoordinatorMessage/outcome(_:_:)``, which is
    ///   not sent to participants, and `invalid_json` for a payload that is not JSON.
    ///
    /// - Parameter traceparents: One per message (or empty: none): each message's `traceparent`.
    public init(_ messages: [CoordinatorMessage], traceparents: [String?] = []) throws(APIError) {
        precondition(traceparents.isEmpty || traceparents.count == messages.count, "one traceparent per message")
        var wire: [BatchMessage] = []
        wire.reserveCapacity(messages.count)
        for (index, message) in messages.enumerated() {
            guard let item = try BatchMessage(message, traceparent: traceparents.isEmpty ? nil : traceparents[index]) else {
                throw APIError.invalidValue("messages[\(index)]", "an outcome message cannot be batched to a participant")
            }
            wire.append(item)
        }
        self.init(messages: wire)
    }

    /// Checks every message; the whole batch is refused if one message is invalid, since only a
    /// faulty coordinator sends one.
    public func validated(limits: WireLimits) throws(APIError) -> [CoordinatorMessage] {
        try WireValidation.batchCount(messages.count, field: "messages", noun: "message", limits: limits)
        var result: [CoordinatorMessage] = []
        result.reserveCapacity(messages.count)
        for (index, message) in messages.enumerated() {
            result.append(try message.validated(limits: limits, fieldPrefix: "messages[\(index)]."))
        }
        return result
    }
}

/// One reply of `POST /v1/batch`, in the same position as its message: the single endpoint's
/// reply with a `type` member, or `{"type": "error", "txid", "error": {...}}` when that message
/// failed at the participant (the others still count).
public enum BatchReply: Codable, Hashable, Sendable {
    case prepare(PrepareReply)
    case commit(AcknowledgeReply)
    case abort(AcknowledgeReply)
    case error(txid: String, ErrorDetail)

    /// The `type` values of replies.
    public enum ReplyType: String, WireEnum {
        case prepare, commit, abort, error
    }

    private enum CodingKeys: String, CodingKey { case type, txid, error }

    /// The reply's `type` member.
    public var type: ReplyType {
        switch self {
        case .prepare: return .prepare
        case .commit: return .commit
        case .abort: return .abort
        case .error: return .error
        }
    }

    /// The transaction id.
    public var txid: String {
        switch self {
        case .prepare(let reply): return reply.txid
        case .commit(let reply), .abort(let reply): return reply.txid
        case .error(let txid, _): return txid
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        switch try container.decode(ReplyType.self, forKey: .type) {
        case .prepare: self = .prepare(try PrepareReply(from: decoder))
        case .commit: self = .commit(try AcknowledgeReply(from: decoder))
        case .abort: self = .abort(try AcknowledgeReply(from: decoder))
        case .error:
            self = .error(
                txid: try container.decode(String.self, forKey: .txid),
                try container.decode(ErrorDetail.self, forKey: .error)
            )
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(type, forKey: .type)
        switch self {
        case .prepare(let reply): try reply.encode(to: encoder)
        case .commit(let reply), .abort(let reply): try reply.encode(to: encoder)
        case .error(let txid, let detail):
            try container.encode(txid, forKey: .txid)
            try container.encode(detail, forKey: .error)
        }
    }

    /// The reply to `message` carrying the participant's answer (a vote or one-phase outcome for a
    /// prepare, an acknowledgement for a commit or abort). An answer that does not fit its message
    /// is a bug in the participant's service; it becomes an `internal` error reply, not a crash.
    public init(answering message: CoordinatorMessage, with answer: ParticipantMessage) {
        switch message {
        case .prepare:
            if let reply = PrepareReply(answer) {
                self = .prepare(reply)
                return
            }
        case .commit:
            if let reply = AcknowledgeReply(answer) {
                self = .commit(reply)
                return
            }
        case .abort:
            if let reply = AcknowledgeReply(answer) {
                self = .abort(reply)
                return
            }
        case .outcome:
            break
        }
        self = .error(
            txid: message.txid.rawValue,
            ErrorDetail(APIError.internal("the participant's answer does not fit the message it answers"))
        )
    }

    /// The reply to `message` when handling it failed.
    public init(answering message: CoordinatorMessage, failure: APIError) {
        self = .error(txid: message.txid.rawValue, ErrorDetail(failure))
    }

    /// The core message this reply stands for, or the participant's error for that message.
    public func result(fieldPrefix: String = "") throws(APIError) -> Result<ParticipantMessage, ErrorDetail> {
        switch self {
        case .prepare(let reply): return .success(try reply.message(fieldPrefix: fieldPrefix))
        case .commit(let reply), .abort(let reply): return .success(try reply.message(fieldPrefix: fieldPrefix))
        case .error(_, let detail): return .failure(detail)
        }
    }
}

extension ErrorDetail: Error {}

/// `POST /v1/batch` response: `{replies: [...]}`, one reply per message, in order.
public struct BatchResponse: Codable, Hashable, Sendable {
    /// One reply per message, in the messages' order.
    public var replies: [BatchReply]

    /// Makes a value from its members, as they travel on the wire.
    public init(replies: [BatchReply]) { self.replies = replies }
}
