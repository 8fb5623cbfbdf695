public import HTTPTypes

/// An error the HTTP API reports to its caller as `{"error": {"code", "message", "field"?}}`.
///
/// The message says what is wrong and, where a limit was passed, what the limit is; `field` is the
/// path of the offending field in the request (`branches[2].participant`), a path parameter
/// (`id`) or a query parameter (`limit`). Handlers throw it; ``APIErrorMiddleware`` renders it.
public struct APIError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A stable, machine-readable error code (`snake_case`). Clients branch on the code, people
    /// read the message.
    public struct Code: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
        /// The code's text.
        public var rawValue: String
        /// Wraps a code's text.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// Wraps a code's text.
        public init(stringLiteral value: String) { self.rawValue = value }
        public var description: String { rawValue }

        /// The body is not JSON (RFC 8259). 400.
        public static let invalidJSON: Code = "invalid_json"
        /// A required field is absent. 400.
        public static let missingField: Code = "missing_field"
        /// A field has the wrong JSON type. 400.
        public static let wrongType: Code = "wrong_type"
        /// A field, path or query parameter has the right type but a value that is not allowed. 400.
        public static let invalidValue: Code = "invalid_value"
        /// A count or size limit was passed (branches, payload bytes, batch messages). 400.
        public static let limitExceeded: Code = "limit_exceeded"
        /// Two branches name the same participant. 400.
        public static let duplicateParticipant: Code = "duplicate_participant"
        /// The request needs a valid bearer token. 401.
        public static let unauthorized: Code = "unauthorized"
        /// The bearer token is valid but its role may not call this route (a client token at a
        /// participant's protocol endpoint, a participant token at submit). 403.
        public static let forbidden: Code = "forbidden"
        /// A branch names a participant the coordinator was not told about (its registry). 400.
        public static let unknownParticipant: Code = "unknown_participant"
        /// No such route or transaction. 404.
        public static let notFound: Code = "not_found"
        /// The route exists but not with this method. 405.
        public static let methodNotAllowed: Code = "method_not_allowed"
        /// The transaction id is in use by a transaction with other branches. 409.
        public static let idInUse: Code = "id_in_use"
        /// The request body is larger than the limit. 413.
        public static let bodyTooLarge: Code = "body_too_large"
        /// The request body's `Content-Type` is not `application/json`. 415.
        public static let unsupportedMediaType: Code = "unsupported_media_type"
        /// Something failed inside the server; the message does not reveal what. 500.
        public static let `internal`: Code = "internal"
        /// The server cannot take the request now (starting, stopping, overloaded); retry later. 503.
        public static let unavailable: Code = "unavailable"
        /// The service's storage cannot be written (a full disk, an I/O error): nothing was done;
        /// retry once `GET /readyz` answers 200. 503.
        public static let storageUnavailable: Code = "storage_unavailable"
        /// The outcome was not known before the deadline; ask again with the same id. 504.
        public static let outcomeUnknown: Code = "outcome_unknown"
        /// An operator's phase-2 retry of a transaction that is not decided-and-unacknowledged. 409.
        public static let notInPhaseTwo: Code = "not_in_phase_two"

        /// Every code the API sends, as `schemas/openapi.yaml` lists them.
        public static let all: [Code] = [
            .invalidJSON, .missingField, .wrongType, .invalidValue, .limitExceeded, .duplicateParticipant,
            .unknownParticipant, .unauthorized, .forbidden, .notFound, .methodNotAllowed, .idInUse, .bodyTooLarge,
            .unsupportedMediaType, .internal, .unavailable, .storageUnavailable, .outcomeUnknown, .notInPhaseTwo,
        ]
    }

    /// The HTTP status of the response.
    public var status: HTTPResponse.Status
    /// The machine-readable code.
    public var code: Code
    /// What is wrong, for people: names the limit or the allowed values where there are some.
    public var message: String
    /// Where in the request the problem is, or `nil` when it concerns the request as a whole.
    public var field: String?

    /// Makes an error with an explicit status.
    public init(status: HTTPResponse.Status, code: Code, message: String, field: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String {
        "\(status.code) \(code): \(message)" + (field.map { " (field \($0))" } ?? "")
    }

    /// The same error about a part of a larger request: `field` and the message are prefixed
    /// with `path` (`transactions[3]` makes `branches` `transactions[3].branches`).
    public func nested(in path: String) -> APIError {
        APIError(status: status, code: code, message: "\(path): \(message)", field: field.map { "\(path).\($0)" } ?? path)
    }

    /// `invalid_json`, 400.
    public static func invalidJSON(_ message: String) -> APIError {
        APIError(status: .badRequest, code: .invalidJSON, message: message)
    }

    /// `missing_field`, 400.
    public static func missingField(_ field: String) -> APIError {
        APIError(status: .badRequest, code: .missingField, message: "required field `\(field)` is missing", field: field)
    }

    /// `wrong_type`, 400.
    public static func wrongType(_ field: String?, _ message: String) -> APIError {
        APIError(status: .badRequest, code: .wrongType, message: message, field: field)
    }

    /// `invalid_value`, 400.
    public static func invalidValue(_ field: String?, _ message: String) -> APIError {
        APIError(status: .badRequest, code: .invalidValue, message: message, field: field)
    }

    /// `limit_exceeded`, 400.
    public static func limitExceeded(_ field: String?, _ message: String) -> APIError {
        APIError(status: .badRequest, code: .limitExceeded, message: message, field: field)
    }

    /// `body_too_large`, 413.
    public static func bodyTooLarge(limit: Int) -> APIError {
        APIError(
            status: .contentTooLarge,
            code: .bodyTooLarge,
            message: "the request body is larger than the limit of \(limit) bytes"
        )
    }

    /// `unauthorized`, 401. The message never echoes what the caller sent.
    public static func unauthorized(_ message: String = "this request needs the header `Authorization: Bearer <secret>` with a valid secret") -> APIError {
        APIError(status: .unauthorized, code: .unauthorized, message: message)
    }

    /// `forbidden`, 403: the token is known but its role may not do this. The message names the
    /// role needed, never the token.
    public static func forbidden(_ message: String) -> APIError {
        APIError(status: .forbidden, code: .forbidden, message: message)
    }

    /// `not_found`, 404.
    public static func notFound(_ message: String, field: String? = nil) -> APIError {
        APIError(status: .notFound, code: .notFound, message: message, field: field)
    }

    /// `id_in_use`, 409.
    public static func idInUse(_ id: String) -> APIError {
        APIError(
            status: .conflict,
            code: .idInUse,
            message: "transaction id \(id) is already in use with different branches; choose another id",
            field: "id"
        )
    }

    /// `outcome_unknown`, 504: the deadline passed before the outcome was known.
    public static func outcomeUnknown(_ id: String, _ message: String? = nil) -> APIError {
        APIError(
            status: .gatewayTimeout,
            code: .outcomeUnknown,
            message: message
                ?? "the outcome of transaction \(id) was not known before the deadline; ask again with the same id"
        )
    }

    /// `unavailable`, 503.
    public static func unavailable(_ message: String) -> APIError {
        APIError(status: .serviceUnavailable, code: .unavailable, message: message)
    }

    /// `storage_unavailable`, 503: the storage cannot be written; `message` says since when and why.
    public static func storageUnavailable(_ message: String) -> APIError {
        APIError(status: .serviceUnavailable, code: .storageUnavailable, message: message)
    }

    /// `internal`, 500. Keep `message` free of internals; log the cause instead.
    public static func `internal`(_ message: String = "internal error; the server has logged the cause") -> APIError {
        APIError(status: .internalServerError, code: .internal, message: message)
    }
}

extension APIError {
    /// Renders a coding path as a field path: `branches[2].participant`.
    static func fieldPath(_ codingPath: [any CodingKey]) -> String? {
        guard !codingPath.isEmpty else { return nil }
        var path = ""
        for key in codingPath {
            if let index = key.intValue {
                path += "[\(index)]"
            } else {
                if !path.isEmpty { path += "." }
                path += key.stringValue
            }
        }
        return path
    }

    /// Translates a decoding failure into the error the caller sees.
    init(_ error: DecodingError) {
        switch error {
        case .keyNotFound(let key, let context):
            self = .missingField(APIError.fieldPath(context.codingPath + [key]) ?? key.stringValue)
        case .typeMismatch(_, let context):
            let field = APIError.fieldPath(context.codingPath)
            self = .wrongType(field, "\(field.map { "`\($0)`: " } ?? "")\(context.debugDescription)")
        case .valueNotFound(_, let context):
            let field = APIError.fieldPath(context.codingPath)
            self = .wrongType(field, "\(field.map { "`\($0)`: " } ?? "")\(context.debugDescription)")
        case .dataCorrupted(let context):
            let field = APIError.fieldPath(context.codingPath)
            self = .invalidValue(field, "\(field.map { "`\($0)`: " } ?? "")\(context.debugDescription)")
        @unknown default:
            self = .invalidValue(nil, "\(error)")
        }
    }
}
