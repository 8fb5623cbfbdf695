/// The identity of one distributed transaction.
///
/// A transaction id is 1–128 characters from `[A-Za-z0-9._:-]`. A client may choose one, and it then
/// serves as an idempotency key: submitting the same id again returns the recorded outcome instead of
/// running the transaction twice. The restricted alphabet keeps ids safe in URLs, file names and logs
/// without escaping.
public struct TxID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The longest id accepted, in characters.
    public static let lengthMax = 128

    /// The validated text of the id.
    public let rawValue: String
    /// The text's hash, computed once: the services look a transaction up in several dictionaries
    /// per message (machine state, timers, waiting requests), and hashing and comparing the text
    /// each time was a tenth of a participant's CPU under load. Two ids with different hashes are
    /// told apart without reading their text. (`Hasher` is seeded per process, so this never leaves
    /// the process.)
    private let textHash: Int

    /// Validates `rawValue` and wraps it.
    ///
    /// - Throws: ``InvalidTxID`` naming the first rule broken, so a caller can tell the user what to fix.
    public init(_ rawValue: String) throws(InvalidTxID) {
        if let problem = TxID.problem(with: rawValue) { throw problem }
        self.rawValue = rawValue
        self.textHash = rawValue.hashValue
    }

    /// Wraps `rawValue` that the caller has already validated (records read back from our own log).
    init(trusted rawValue: String) {
        assert(TxID.problem(with: rawValue) == nil, "untrusted transaction id \(rawValue)")
        self.rawValue = rawValue
        self.textHash = rawValue.hashValue
    }

    public static func == (lhs: TxID, rhs: TxID) -> Bool {
        lhs.textHash == rhs.textHash && lhs.rawValue == rhs.rawValue
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(textHash)
    }

    /// The rule that `text` breaks, or `nil` when it is a valid id.
    public static func problem(with text: String) -> InvalidTxID? {
        let utf8 = text.utf8
        if utf8.isEmpty { return .empty }
        if utf8.count > lengthMax { return .tooLong(length: utf8.count) }
        for byte in utf8 where !isAllowed(byte) {
            return .forbiddenCharacter(Character(Unicode.Scalar(byte)))
        }
        // "." and ".." are dot-segments: a URL such as /v1/transactions/.. would be rewritten.
        if utf8.allSatisfy({ $0 == UInt8(ascii: ".") }) { return .onlyDots }
        return nil
    }

    private static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: ":"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    public static func < (lhs: TxID, rhs: TxID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { rawValue }
}

/// Why a string is not a valid ``TxID``.
public enum InvalidTxID: Error, Hashable, Sendable, CustomStringConvertible {
    case empty
    case tooLong(length: Int)
    case forbiddenCharacter(Character)
    case onlyDots

    public var description: String {
        switch self {
        case .empty:
            return "transaction id is empty; use 1–\(TxID.lengthMax) characters from [A-Za-z0-9._:-]"
        case .tooLong(let length):
            return "transaction id has \(length) characters; the limit is \(TxID.lengthMax)"
        case .forbiddenCharacter(let character):
            let shown = character.isASCII && !character.isWhitespace ? "'\(character)'" : "a non-printing or non-ASCII character"
            return "transaction id contains \(shown); only [A-Za-z0-9._:-] are allowed"
        case .onlyDots:
            return "transaction id is made only of dots, which URLs treat as path segments; add another character"
        }
    }
}

/// The identity of a participant service, as the coordinator addresses it (its base URL in the
/// HTTP services, a name in the simulator). The core treats it as opaque.
public struct ParticipantID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public static func < (lhs: ParticipantID, rhs: ParticipantID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { rawValue }
}

/// The identity of a coordinator, as a participant addresses it for in-doubt inquiries (its base URL
/// in the HTTP services). The core treats it as opaque.
public struct CoordinatorID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public static func < (lhs: CoordinatorID, rhs: CoordinatorID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { rawValue }
}

/// A branch's opaque, participant-specific instructions (JSON in the HTTP services).
///
/// The coordinator never looks inside; the participant's resource decodes it.
public struct Payload: Hashable, Sendable {
    public var bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(_ text: String) { self.bytes = Array(text.utf8) }
}

/// One participant's part of a transaction.
public struct Branch: Hashable, Sendable {
    public var participant: ParticipantID
    public var payload: Payload
    public init(participant: ParticipantID, payload: Payload) {
        self.participant = participant
        self.payload = payload
    }
}
