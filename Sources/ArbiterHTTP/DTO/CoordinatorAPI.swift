public import ArbiterCore

// The coordinator API's bodies (see schemas/openapi.yaml). Each request body has a `validated`
// method that checks what the JSON types cannot express and returns core types; a failure is an
// `APIError` naming the field.

/// One branch of a submitted transaction: `{"participant", "payload"}`.
public struct BranchBody: Codable, Hashable, Sendable {
    /// The participant's base URL (`http://` or `https://`).
    public var participant: String
    /// The participant's instructions, any JSON value, kept byte for byte.
    public var payload: RawJSON

    /// Makes a value from its members, as they travel on the wire.
    public init(participant: String, payload: RawJSON) {
        self.participant = participant
        self.payload = payload
    }

    /// The wire form of a core branch.
    ///
    /// - Throws: ``APIError`` `invalid_json` when the payload's bytes are not one JSON value.
    public init(_ branch: Branch) throws(APIError) {
        self.participant = branch.participant.rawValue
        self.payload = try RawJSON(branch.payload)
    }
}

/// `POST /v1/transactions` request: `{id?, branches, timeoutMs?, wait?}`.
public struct SubmitRequest: Codable, Hashable, Sendable {
    /// The transaction id; an idempotency key when given. The coordinator makes one when absent.
    public var id: String?
    /// The branches, one per participant (1...``WireLimits/branchCountMax``).
    public var branches: [BranchBody]
    /// How long the coordinator may take to collect the votes, in milliseconds.
    public var timeoutMs: Int?
    /// When to answer; `decision` when absent.
    public var wait: WaitMode?

    /// Makes a value from its members, as they travel on the wire.
    public init(id: String? = nil, branches: [BranchBody], timeoutMs: Int? = nil, wait: WaitMode? = nil) {
        self.id = id
        self.branches = branches
        self.timeoutMs = timeoutMs
        self.wait = wait
    }

    /// The wire form of a submission made of core values.
    ///
    /// - Throws: ``APIError`` `invalid_json` when a payload's bytes are not one JSON value.
    public init(id: TxID?, branches: [Branch], timeout: Duration?, wait: WaitMode?) throws(APIError) {
        var bodies: [BranchBody] = []
        bodies.reserveCapacity(branches.count)
        for branch in branches { bodies.append(try BranchBody(branch)) }
        self.init(id: id?.rawValue, branches: bodies, timeoutMs: timeout.map(Self.milliseconds), wait: wait)
    }

    /// Whole milliseconds, rounded up so a positive timeout never becomes 0.
    static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        let fraction = (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int(seconds) * 1000 + Int(fraction)
    }

    /// Checks the request against the protocol's rules and `limits`.
    ///
    /// Refuses: an invalid id; no branch, or more than ``WireLimits/branchCountMax``; a participant
    /// that is not an http(s) URL; a participant named twice; a payload over
    /// ``WireLimits/payloadSizeMax``; a timeout outside 1...``WireLimits/timeoutMsMax``.
    public func validated(limits: WireLimits) throws(APIError) -> Submission {
        try validated(limits: limits) { (text, field) throws(APIError) in
            try WireValidation.serviceURL(text, field: field, limits: limits)
        }
    }

    /// Checks the request as ``validated(limits:)`` does, with `participant` turning each branch's
    /// `participant` into the base URL to use (a coordinator's registry resolves names there and
    /// refuses what it does not know).
    public func validated(
        limits: WireLimits, participant resolve: (_ text: String, _ field: String) throws(APIError) -> String
    ) throws(APIError) -> Submission {
        let txid = try id.map { (text) throws(APIError) in try WireValidation.txid(text, field: "id") }
        guard !branches.isEmpty else {
            throw APIError.invalidValue("branches", "`branches`: a transaction needs at least one branch")
        }
        guard branches.count <= limits.branchCountMax else {
            throw APIError.limitExceeded(
                "branches",
                "`branches`: the transaction has \(branches.count) branches; the limit is \(limits.branchCountMax)"
            )
        }
        var seen: [String: Int] = [:]
        var coreBranches: [Branch] = []
        coreBranches.reserveCapacity(branches.count)
        for (index, branch) in branches.enumerated() {
            let field = "branches[\(index)].participant"
            let url = try resolve(branch.participant, field)
            if let first = seen[url] {
                throw APIError(
                    status: .badRequest,
                    code: .duplicateParticipant,
                    message: "`\(field)`: participant \(url) is also in branches[\(first)]; merge its work into one branch",
                    field: field
                )
            }
            seen[url] = index
            let payload = try WireValidation.payload(branch.payload, field: "branches[\(index)].payload", limits: limits)
            coreBranches.append(Branch(participant: ParticipantID(url), payload: payload))
        }
        var timeout: Duration?
        if let timeoutMs {
            guard (1...limits.timeoutMsMax).contains(timeoutMs) else {
                throw APIError.invalidValue(
                    "timeoutMs",
                    "`timeoutMs`: \(timeoutMs) is outside the allowed range 1...\(limits.timeoutMsMax)"
                )
            }
            timeout = .milliseconds(timeoutMs)
        }
        return Submission(id: txid, branches: coreBranches, timeout: timeout, wait: wait ?? .decision)
    }
}

/// A validated `POST /v1/transactions` request, in core types.
public struct Submission: Hashable, Sendable {
    /// The client's id, or `nil` when the coordinator must make one.
    public var id: TxID?
    /// The branches, participants normalized (no trailing slash) and distinct.
    public var branches: [Branch]
    /// The client's timeout, or `nil` for the coordinator's default.
    public var timeout: Duration?
    /// When the client wants its answer.
    public var wait: WaitMode

    /// Makes a submission from core values.
    public init(id: TxID?, branches: [Branch], timeout: Duration?, wait: WaitMode) {
        self.id = id
        self.branches = branches
        self.timeout = timeout
        self.wait = wait
    }
}

/// `POST /v1/transactions` response: `{id, outcome, reason?}`.
public struct SubmitResponse: Codable, Hashable, Sendable {
    /// The transaction id.
    public var id: String
    /// The transaction's outcome.
    public var outcome: WireOutcome
    /// Why the transaction aborted, for people (absent when committed).
    public var reason: String?

    /// Makes a value from its members, as they travel on the wire.
    public init(id: String, outcome: WireOutcome, reason: String? = nil) {
        self.id = id
        self.outcome = outcome
        self.reason = reason
    }

    /// The response for a core outcome.
    public init(id: TxID, outcome: Outcome, reason: String?) {
        self.init(id: id.rawValue, outcome: WireOutcome(outcome), reason: reason)
    }
}

/// `POST /v1/transaction-batch` request: `{transactions: [SubmitRequest]}`.
///
/// Many *independent* transactions in one request — not one atomic unit: each runs, and is
/// answered, exactly as if it had been submitted alone. The response streams one
/// ``SubmitBatchResult`` line per transaction as soon as its outcome is known.
public struct SubmitBatchRequest: Codable, Hashable, Sendable {
    /// The transactions, 1...``WireLimits/batchMessageCountMax`` of them.
    public var transactions: [SubmitRequest]

    /// Makes a value from its members, as they travel on the wire.
    public init(transactions: [SubmitRequest]) {
        self.transactions = transactions
    }

    /// Checks every transaction as `POST /v1/transactions` would, and their count against
    /// ``WireLimits/batchMessageCountMax``.
    ///
    /// The first invalid transaction fails the whole request with its field prefixed by
    /// `transactions[i].`, so that nothing of a malformed batch is submitted.
    public func validated(limits: WireLimits) throws(APIError) -> [Submission] {
        try validated(limits: limits) { (text, field) throws(APIError) in
            try WireValidation.serviceURL(text, field: field, limits: limits)
        }
    }

    /// Checks every transaction as ``validated(limits:)`` does, resolving participants with
    /// `participant` (see ``SubmitRequest/validated(limits:participant:)``).
    public func validated(
        limits: WireLimits, participant resolve: (_ text: String, _ field: String) throws(APIError) -> String
    ) throws(APIError) -> [Submission] {
        try WireValidation.batchCount(transactions.count, field: "transactions", noun: "transaction", limits: limits)
        var submissions: [Submission] = []
        submissions.reserveCapacity(transactions.count)
        for (index, transaction) in transactions.enumerated() {
            do {
                submissions.append(try transaction.validated(limits: limits, participant: resolve))
            } catch {
                throw error.nested(in: "transactions[\(index)]")
            }
        }
        return submissions
    }
}

/// One line of the `POST /v1/transaction-batch` response (`application/x-ndjson`): what
/// `POST /v1/transactions` would have answered for `transactions[index]` — its outcome, or the
/// error with the HTTP status it would have had.
public struct SubmitBatchResult: Codable, Hashable, Sendable {
    /// The transaction's position in the request.
    public var index: Int
    /// The transaction id (made by the coordinator when the request gave none).
    public var id: String
    /// The outcome; absent when `error` is set.
    public var outcome: WireOutcome?
    /// Why the transaction aborted, for people.
    public var reason: String?
    /// Why there is no outcome: `id_in_use` (409), `outcome_unknown` (504, submit the id again),
    /// `unavailable` (503, retry).
    public var error: ErrorDetail?
    /// With `error`: the HTTP status `POST /v1/transactions` would have answered.
    public var status: Int?

    /// Makes a value from its members, as they travel on the wire.
    public init(index: Int, id: String, outcome: WireOutcome? = nil, reason: String? = nil, error: ErrorDetail? = nil, status: Int? = nil) {
        self.index = index
        self.id = id
        self.outcome = outcome
        self.reason = reason
        self.error = error
        self.status = status
    }

    /// The line for an outcome.
    public init(index: Int, id: TxID, outcome: Outcome, reason: String?) {
        self.init(index: index, id: id.rawValue, outcome: WireOutcome(outcome), reason: reason)
    }

    /// The line for an error.
    public init(index: Int, id: TxID, error: APIError) {
        self.init(index: index, id: id.rawValue, error: ErrorDetail(error), status: Int(error.status.code))
    }
}

/// One branch as `GET /v1/transactions/{id}` shows it.
public struct BranchView: Codable, Hashable, Sendable {
    /// The participant's base URL.
    public var participant: String
    /// The branch's payload, byte for byte.
    public var payload: RawJSON
    /// The participant's vote, once known.
    public var vote: WireVote?
    /// The reason the participant gave with a `no` vote.
    public var voteReason: String?
    /// What the participant acknowledged in phase 2, once it has.
    public var acknowledgement: WireLocalOutcome?

    /// Makes a value from its members, as they travel on the wire.
    public init(
        participant: String,
        payload: RawJSON,
        vote: WireVote? = nil,
        voteReason: String? = nil,
        acknowledgement: WireLocalOutcome? = nil
    ) {
        self.participant = participant
        self.payload = payload
        self.vote = vote
        self.voteReason = voteReason
        self.acknowledgement = acknowledgement
    }
}

/// `GET /v1/transactions/{id}` response, and one item of the listing.
public struct TransactionView: Codable, Hashable, Sendable {
    /// The transaction id.
    public var id: String
    /// Where the transaction stands.
    public var state: TransactionState
    /// The outcome once decided.
    public var outcome: WireOutcome?
    /// Why it aborted, for people.
    public var reason: String?
    /// The branches, in the order they were submitted.
    public var branches: [BranchView]
    /// When the coordinator recorded the transaction (RFC 3339, UTC; see ``WireTimestamp``).
    public var createdAt: String
    /// When the outcome was decided.
    public var decidedAt: String?
    /// When every participant had acknowledged the outcome.
    public var endedAt: String?

    /// Makes a value from its members, as they travel on the wire.
    public init(
        id: String,
        state: TransactionState,
        outcome: WireOutcome? = nil,
        reason: String? = nil,
        branches: [BranchView],
        createdAt: String,
        decidedAt: String? = nil,
        endedAt: String? = nil
    ) {
        self.id = id
        self.state = state
        self.outcome = outcome
        self.reason = reason
        self.branches = branches
        self.createdAt = createdAt
        self.decidedAt = decidedAt
        self.endedAt = endedAt
    }
}

/// `GET /v1/transactions` response: a page of transactions in the order the coordinator recorded
/// them.
public struct TransactionPage: Codable, Hashable, Sendable {
    /// The page's transactions, oldest first.
    public var transactions: [TransactionView]
    /// The cursor to pass as `after` to get the next page (an opaque ``ListQuery/isCursor(_:)``
    /// string, not a transaction id); absent on the last page.
    public var next: String?

    /// Makes a value from its members, as they travel on the wire.
    public init(transactions: [TransactionView], next: String? = nil) {
        self.transactions = transactions
        self.next = next
    }
}

/// `GET /v1/transactions/{id}/outcome` response: `{id, outcome: committed|aborted|pending}`.
public struct OutcomeResponse: Codable, Hashable, Sendable {
    /// The transaction id.
    public var id: String
    /// The coordinator's answer: committed, aborted or pending.
    public var outcome: WireInquiryAnswer

    /// Makes a value from its members, as they travel on the wire.
    public init(id: String, outcome: WireInquiryAnswer) {
        self.id = id
        self.outcome = outcome
    }

    /// The response for a core answer.
    public init(id: TxID, answer: InquiryAnswer) {
        self.init(id: id.rawValue, outcome: WireInquiryAnswer(answer))
    }

    /// The core message this answer stands for.
    ///
    /// - Throws: ``APIError`` when `id` is not a valid transaction id.
    public func message() throws(APIError) -> CoordinatorMessage {
        .outcome(try WireValidation.txid(id, field: "id"), outcome.answer)
    }
}

/// The body of `GET /readyz` when the service can take work: `{"status": "ready"}`. When it
/// cannot, the answer is 503 with the JSON error `storage_unavailable`.
public struct ReadyResponse: Codable, Hashable, Sendable {
    /// Always `ready`.
    public var status: String
    /// Makes a value from its members, as they travel on the wire.
    public init(status: String = "ready") { self.status = status }
}

/// `GET /healthz` response: `{"status": "ok"}`: the process answers (liveness). Whether it can take
/// work is `GET /readyz`.
public struct HealthResponse: Codable, Hashable, Sendable {
    /// Always `ok` when the service answers.
    public var status: String
    /// Makes a value from its members, as they travel on the wire.
    public init(status: String = "ok") { self.status = status }
}

/// The query of `GET /v1/transactions`: `state`, `limit`, `after`.
public struct ListQuery: Hashable, Sendable {
    /// Only transactions in this state; all when `nil`.
    public var state: TransactionState?
    /// The page size, in 1...``WireLimits/listLimitMax``.
    public var limit: Int
    /// Only transactions recorded after the one this cursor points at: the previous page's
    /// `next`, an opaque string of decimal digits (see ``isCursor(_:)``).
    public var after: String?

    /// Makes a query from its parts.
    public init(state: TransactionState? = nil, limit: Int, after: String? = nil) {
        self.state = state
        self.limit = limit
        self.after = after
    }

    /// The query parameter names the listing accepts.
    public static let parameterNames: Set<String> = ["state", "limit", "after"]

    /// Parses query parameters (already percent-decoded), refusing unknown or repeated names.
    public init(parameters: some Sequence<(name: String, value: String)>, limits: WireLimits) throws(APIError) {
        var state: TransactionState?
        var limit: Int?
        var after: String?
        var seen = Set<String>()
        for (name, value) in parameters {
            guard ListQuery.parameterNames.contains(name) else {
                throw APIError.invalidValue(name, "unknown query parameter `\(WireValidation.abbreviated(name))`; use state, limit, after")
            }
            guard seen.insert(name).inserted else {
                throw APIError.invalidValue(name, "query parameter `\(name)` is given more than once")
            }
            switch name {
            case "state":
                guard let parsed = TransactionState(rawValue: value) else {
                    throw APIError.invalidValue("state", "`state`: \"\(WireValidation.abbreviated(value))\" is not one of \(TransactionState.allowedList)")
                }
                state = parsed
            case "limit":
                guard let parsed = Int(value), (1...limits.listLimitMax).contains(parsed) else {
                    throw APIError.invalidValue("limit", "`limit`: must be an integer in 1...\(limits.listLimitMax)")
                }
                limit = parsed
            default:
                guard ListQuery.isCursor(value) else {
                    throw APIError.invalidValue("after", "`after`: \"\(WireValidation.abbreviated(value))\" is not a cursor; pass a previous page's `next`")
                }
                after = value
            }
        }
        self.init(state: state, limit: limit ?? limits.listLimitDefault, after: after)
    }

    /// Whether `text` has the form of a listing cursor: 1 to 19 decimal digits, at most
    /// 9223372036854775807 (a position in the coordinator's log; clients treat it as opaque).
    public static func isCursor(_ text: String) -> Bool {
        text.utf8.count <= 19 && text.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") } && Int64(text) != nil
    }

    /// The query string for this query, without the leading `?`. Values need no escaping: states,
    /// integers and cursors use only URL-safe characters.
    public var queryString: String {
        var items: [String] = []
        if let state { items.append("state=\(state.rawValue)") }
        items.append("limit=\(limit)")
        if let after { items.append("after=\(after)") }
        return items.joined(separator: "&")
    }
}
