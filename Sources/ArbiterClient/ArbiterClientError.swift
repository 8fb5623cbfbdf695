public import ArbiterHTTP

/// Why a call to the coordinator failed.
///
/// `code` is the server's error code when the coordinator answered with one (`id_in_use`,
/// `invalid_value`, `unauthorized`, `outcome_unknown`…), or one of the client-side codes below when
/// it did not. `message` says what went wrong; `cause` is the underlying error, if any.
public struct ArbiterClientError: Error, CustomStringConvertible {
    /// A machine-readable error code; compare with the constants here or with ``APIError/Code``'s.
    public struct Code: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
        /// The code's text.
        public var rawValue: String
        /// Wraps a code's text.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// Wraps a code's text.
        public init(stringLiteral value: String) { self.rawValue = value }
        public var description: String { rawValue }

        /// The coordinator could not be reached (connection refused, reset, DNS, TLS).
        public static let unreachable: Code = "unreachable"
        /// The coordinator did not answer before the request timeout.
        public static let timedOut: Code = "timed_out"
        /// The coordinator's answer does not follow the protocol.
        public static let invalidResponse: Code = "invalid_response"
        /// The request was not sent because it is invalid (a payload that is not JSON, say).
        public static let invalidRequest: Code = "invalid_request"
        /// The calling task was cancelled.
        public static let cancelled: Code = "cancelled"
        /// The coordinator answered an error status without a JSON error body.
        public static let httpError: Code = "http_error"

        /// The same code as a server ``APIError/Code``.
        public init(_ code: APIError.Code) { self.rawValue = code.rawValue }
    }

    /// The machine-readable code.
    public var code: Code
    /// What went wrong, for people.
    public var message: String
    /// The HTTP status, when the coordinator answered.
    public var status: Int?
    /// The request field the coordinator objected to (`branches[1].participant`), when it said.
    public var field: String?
    /// How many attempts were made (more than 1 when retries happened).
    public var attemptCount: Int
    /// The underlying error, when there is one.
    public var cause: (any Error)?

    /// Makes an error.
    public init(code: Code, message: String, status: Int? = nil, field: String? = nil, attemptCount: Int = 1, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.status = status
        self.field = field
        self.attemptCount = attemptCount
        self.cause = cause
    }

    /// Whether the transaction's outcome is unknown to the caller: the submit may or may not have
    /// run. Ask again with the same id (``ArbiterClient/submit(branches:id:timeout:wait:)`` or
    /// ``ArbiterClient/transaction(_:)``) to learn it.
    public var isOutcomeUncertain: Bool {
        switch code {
        case .unreachable, .timedOut, .cancelled, Code(.outcomeUnknown), Code(.internal), Code(.unavailable):
            return true
        default:
            return (status ?? 0) >= 500
        }
    }

    public var description: String {
        var text = "\(code): \(message)"
        if let field { text += " (field \(field))" }
        if let status { text += " [HTTP \(status)]" }
        if attemptCount > 1 { text += " after \(attemptCount) attempts" }
        return text
    }

    /// The client error for a failed wire call.
    init(_ error: WireCallError, attemptCount: Int) {
        let code: Code
        switch error.kind {
        case .unreachable: code = .unreachable
        case .timedOut: code = .timedOut
        case .invalidResponse: code = .invalidResponse
        case .cancelled: code = .cancelled
        case .rejected: code = error.detail.map { Code(rawValue: $0.code) } ?? .httpError
        }
        self.init(
            code: code,
            message: error.detail?.message ?? error.message,
            status: error.status,
            field: error.detail?.field,
            attemptCount: attemptCount,
            cause: error.cause ?? error
        )
    }
}
