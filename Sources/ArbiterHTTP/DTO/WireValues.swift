public import ArbiterCore

/// A string enumeration on the wire whose decoding failure names the allowed values.
public protocol WireEnum: RawRepresentable<String>, CaseIterable, Codable, Hashable, Sendable {}

extension WireEnum {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let value = Self(rawValue: text) else {
            let allowed = Self.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "\"\(text)\" is not one of \(allowed)"
            )
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    /// The allowed values, for messages: `"a", "b"`.
    static var allowedList: String { allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ") }
}

/// When `POST /v1/transactions` answers.
public enum WaitMode: String, WireEnum {
    /// As soon as the outcome is durable (the default).
    case decision
    /// Once every participant has acknowledged the outcome (phase 2 complete).
    case completion
}

/// A transaction's outcome on the wire.
public enum WireOutcome: String, WireEnum {
    case committed
    case aborted

    /// The wire form of a core outcome.
    public init(_ outcome: Outcome) {
        switch outcome {
        case .committed: self = .committed
        case .aborted: self = .aborted
        }
    }

    /// The core outcome.
    public var outcome: Outcome {
        switch self {
        case .committed: return .committed
        case .aborted: return .aborted
        }
    }
}

/// A participant's vote on the wire.
public enum WireVote: String, WireEnum {
    case yes
    case no
    case readOnly = "read-only"
}

/// The coordinator's answer to an in-doubt inquiry on the wire.
public enum WireInquiryAnswer: String, WireEnum {
    case committed
    case aborted
    case pending

    /// The wire form of a core answer.
    public init(_ answer: InquiryAnswer) {
        switch answer {
        case .committed: self = .committed
        case .aborted: self = .aborted
        case .pending: self = .pending
        }
    }

    /// The core answer.
    public var answer: InquiryAnswer {
        switch self {
        case .committed: return .committed
        case .aborted: return .aborted
        case .pending: return .pending
        }
    }
}

/// What a participant durably holds when it acknowledges a decision, on the wire.
public enum WireLocalOutcome: String, WireEnum {
    case committed
    case aborted
    case unknown

    /// The wire form of a core local outcome.
    public init(_ outcome: LocalOutcome) {
        switch outcome {
        case .committed: self = .committed
        case .aborted: self = .aborted
        case .unknown: self = .unknown
        }
    }

    /// The core local outcome.
    public var localOutcome: LocalOutcome {
        switch self {
        case .committed: return .committed
        case .aborted: return .aborted
        case .unknown: return .unknown
        }
    }
}

/// Where a transaction stands, as `GET /v1/transactions/{id}` and the listing's `state` filter say.
public enum TransactionState: String, WireEnum {
    /// Recorded; votes are being collected.
    case preparing
    /// Decided commit (durably); phase 2 is telling the participants.
    case committing
    /// Decided abort; phase 2 is telling the participants that may have prepared.
    case aborting
    /// Ended committed: every participant acknowledged.
    case committed
    /// Ended aborted: every participant that needed to hear it acknowledged.
    case aborted
}

/// Checks of wire values that turn strings into core types, each failure naming its field.
public enum WireValidation {
    /// Validates a transaction id.
    ///
    /// - Throws: ``APIError`` `limit_exceeded` for an id over ``TxID/lengthMax`` characters, and
    ///   `invalid_value` for an empty id or a forbidden character.
    public static func txid(_ text: String, field: String) throws(APIError) -> TxID {
        if let problem = TxID.problem(with: text) {
            switch problem {
            case .tooLong: throw APIError.limitExceeded(field, "`\(field)`: \(problem)")
            case .empty, .forbiddenCharacter, .onlyDots: throw APIError.invalidValue(field, "`\(field)`: \(problem)")
            }
        }
        do {
            return try TxID(text)
        } catch {
            throw APIError.invalidValue(field, "`\(field)`: \(error)")
        }
    }

    /// Validates a service base URL (a participant's or a coordinator's) and returns it without
    /// trailing slashes, so that `http://a:1/` and `http://a:1` name the same service.
    ///
    /// A valid URL is `http://` or `https://` (any case), a host, an optional numeric port and an
    /// optional path; no credentials, query, fragment, whitespace or control characters.
    public static func serviceURL(_ text: String, field: String, limits: WireLimits) throws(APIError) -> String {
        let utf8 = text.utf8
        guard utf8.count <= limits.urlLengthMax else {
            throw APIError.limitExceeded(field, "`\(field)`: the URL has \(utf8.count) bytes; the limit is \(limits.urlLengthMax)")
        }
        let lowered = text.lowercased()
        let rest: Substring
        if lowered.hasPrefix("http://") {
            rest = text.dropFirst(7)
        } else if lowered.hasPrefix("https://") {
            rest = text.dropFirst(8)
        } else {
            throw APIError.invalidValue(field, "`\(field)`: \"\(abbreviated(text))\" is not an http:// or https:// URL")
        }
        for scalar in text.unicodeScalars {
            if scalar.value <= 0x20 || scalar.value == 0x7F || !scalar.isASCII {
                throw APIError.invalidValue(field, "`\(field)`: the URL contains whitespace, a control character or a non-ASCII character")
            }
            if scalar == "?" || scalar == "#" {
                throw APIError.invalidValue(field, "`\(field)`: the URL must not have a query or fragment")
            }
        }
        let authority = rest.prefix(while: { $0 != "/" })
        if authority.contains("@") {
            throw APIError.invalidValue(field, "`\(field)`: the URL must not contain credentials")
        }
        let host: Substring
        if authority.hasPrefix("[") {
            // An IPv6 literal: "[::1]" or "[::1]:8080".
            guard let close = authority.firstIndex(of: "]") else {
                throw APIError.invalidValue(field, "`\(field)`: unterminated IPv6 address in the URL")
            }
            host = authority[authority.startIndex...close]
            try checkPort(authority[authority.index(after: close)...], field: field, allowEmpty: true)
        } else if let colon = authority.firstIndex(of: ":") {
            host = authority[..<colon]
            try checkPort(authority[colon...], field: field, allowEmpty: false)
        } else {
            host = authority
        }
        guard !host.isEmpty else {
            throw APIError.invalidValue(field, "`\(field)`: the URL has no host")
        }
        var trimmed = Substring(text)
        while trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        return String(trimmed)
    }

    private static func checkPort(_ text: Substring, field: String, allowEmpty: Bool) throws(APIError) {
        if text.isEmpty && allowEmpty { return }
        guard text.first == ":", let port = Int(text.dropFirst()), (1...65535).contains(port) else {
            throw APIError.invalidValue(field, "`\(field)`: the URL's port must be a number in 1...65535")
        }
    }

    /// Checks the length of a batch's array `field` of `noun`s: 1...``WireLimits/batchMessageCountMax``.
    public static func batchCount(_ count: Int, field: String, noun: String, limits: WireLimits) throws(APIError) {
        guard count > 0 else {
            throw APIError.invalidValue(field, "`\(field)`: a batch needs at least one \(noun)")
        }
        guard count <= limits.batchMessageCountMax else {
            throw APIError.limitExceeded(field, "`\(field)`: the batch has \(count) \(noun)s; the limit is \(limits.batchMessageCountMax)")
        }
    }

    /// Checks a payload's size.
    public static func payload(_ payload: RawJSON, field: String, limits: WireLimits) throws(APIError) -> Payload {
        guard payload.bytes.count <= limits.payloadSizeMax else {
            throw APIError.limitExceeded(
                field,
                "`\(field)`: the payload has \(payload.bytes.count) bytes; the limit is \(limits.payloadSizeMax)"
            )
        }
        return payload.payload
    }

    static func abbreviated(_ text: String) -> String {
        text.count <= 64 ? text : String(text.prefix(61)) + "..."
    }
}
