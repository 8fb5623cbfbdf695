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
    /// Validates an operator's reason for an override (kept in an audit trail): 1...1000
    /// characters once trimmed, no control characters but tab and newline (a NUL would cut the
    /// text short in SQLite's eyes).
    ///
    /// - Parameter doing: What the reason is for, as the error message says it ("force phase 2 now").
    public static func operatorReason(_ text: String?, doing: String) throws(APIError) -> String {
        let text = text ?? ""
        let kept = text.drop(while: \.isWhitespace)
        let reason = String(kept[..<(kept.lastIndex(where: { !$0.isWhitespace }).map(kept.index(after:)) ?? kept.startIndex)])
        guard !reason.isEmpty, reason.count <= 1000 else {
            throw APIError.invalidValue("reason", "`reason`: say why you \(doing) (1...1000 characters); it is kept in the audit trail")
        }
        guard !reason.unicodeScalars.contains(where: { $0.properties.generalCategory == .control && $0 != "\n" && $0 != "\t" }) else {
            throw APIError.invalidValue("reason", "`reason`: control characters other than tab and newline are not allowed")
        }
        return reason
    }

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
        guard text.utf8.count <= limits.urlLengthMax else {
            throw APIError.limitExceeded(field, "`\(field)`: the URL has \(text.utf8.count) bytes; the limit is \(limits.urlLengthMax)")
        }
        // Every submit names its participants, so this runs per branch, on the coordinator's hot
        // path: it reads the bytes once, without lowercasing or copying the text.
        var contiguous = text
        let verdict = contiguous.withUTF8(ServiceURLVerdict.init)
        switch verdict {
        case .valid(let trailingSlashes):
            return trailingSlashes == 0 ? text : String(text.dropLast(trailingSlashes))
        case .notHTTP:
            throw APIError.invalidValue(field, "`\(field)`: \"\(abbreviated(text))\" is not an http:// or https:// URL")
        case .forbiddenCharacter:
            throw APIError.invalidValue(field, "`\(field)`: the URL contains whitespace, a control character or a non-ASCII character")
        case .queryOrFragment:
            throw APIError.invalidValue(field, "`\(field)`: the URL must not have a query or fragment")
        case .authority(.credentials):
            throw APIError.invalidValue(field, "`\(field)`: the URL must not contain credentials")
        case .authority(.unterminatedIPv6):
            throw APIError.invalidValue(field, "`\(field)`: unterminated IPv6 address in the URL")
        case .authority(.badPort):
            throw APIError.invalidValue(field, "`\(field)`: the URL's port must be a number in 1...65535")
        case .authority(.noHost):
            throw APIError.invalidValue(field, "`\(field)`: the URL has no host")
        }
    }

    /// What ``serviceURL(_:field:limits:)`` finds in a URL's bytes: the first rule broken, checked
    /// in the order of the cases, or how many trailing slashes to drop.
    private enum ServiceURLVerdict {
        case valid(trailingSlashes: Int)
        case notHTTP, forbiddenCharacter, queryOrFragment
        case authority(URLAuthority.Problem)

        init(_ bytes: UnsafeBufferPointer<UInt8>) {
            func hasPrefixIgnoringCase(_ prefix: StaticString) -> Bool {
                guard bytes.count >= prefix.utf8CodeUnitCount else { return false }
                for offset in 0..<prefix.utf8CodeUnitCount {
                    let byte = bytes[offset]
                    let lowered = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte + 32 : byte
                    if lowered != prefix.utf8Start[offset] { return false }
                }
                return true
            }
            let authorityStart: Int
            if hasPrefixIgnoringCase("http://") {
                authorityStart = 7
            } else if hasPrefixIgnoringCase("https://") {
                authorityStart = 8
            } else {
                self = .notHTTP
                return
            }
            for byte in bytes {
                if byte <= 0x20 || byte >= 0x7F {
                    self = .forbiddenCharacter
                    return
                }
                if byte == UInt8(ascii: "?") || byte == UInt8(ascii: "#") {
                    self = .queryOrFragment
                    return
                }
            }
            let authorityEnd = bytes[authorityStart...].firstIndex(of: UInt8(ascii: "/")) ?? bytes.count
            if case .failure(let problem) = URLAuthority.read(bytes[authorityStart..<authorityEnd]) {
                self = .authority(problem)
                return
            }
            var trailingSlashes = 0
            while trailingSlashes < bytes.count && bytes[bytes.count - 1 - trailingSlashes] == UInt8(ascii: "/") {
                trailingSlashes += 1
            }
            self = .valid(trailingSlashes: trailingSlashes)
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

    /// `text` cut to 64 characters (with `...`), for quoting client input in an error message.
    public static func abbreviated(_ text: String) -> String {
        text.count <= 64 ? text : String(text.prefix(61)) + "..."
    }
}
