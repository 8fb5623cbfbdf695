public import Tracing
public import HTTPTypes

/// A W3C Trace Context `traceparent` value (version `00`): the trace a request belongs to and the
/// span that sent it, `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
///
/// Arbiter carries it on every protocol request a transaction causes, so that a participant written
/// in any language sees the client's trace id (see docs/http.md, "Tracing"). Parsing follows the
/// specification's rules: lowercase hex only, neither id all zeros, version `ff` refused; a later
/// version is read for its first four fields, as the specification asks.
public struct TraceParent: Hashable, Sendable, CustomStringConvertible {
    /// The trace id: 32 lowercase hex digits, not all zero.
    public let traceID: String
    /// The id of the span that sent the request: 16 lowercase hex digits, not all zero.
    public let parentID: String
    /// The trace flags; bit 0 is `sampled`.
    public let flags: UInt8

    /// The header's name.
    public static let headerName = "traceparent"
    /// The header's name as a field name.
    public static let header = HTTPField.Name("traceparent")!

    /// A value from its parts, or `nil` when an id is not lowercase hex of the right length or is
    /// all zeros.
    public init?(traceID: String, parentID: String, flags: UInt8 = 1) {
        guard Self.isID(traceID.utf8, count: 32), Self.isID(parentID.utf8, count: 16) else { return nil }
        self.traceID = traceID
        self.parentID = parentID
        self.flags = flags
    }

    /// Parses a header value; `nil` when it does not follow the format.
    public init?(_ header: String) {
        let bytes = Array(header.utf8)
        // version(2) - trace id(32) - parent id(16) - flags(2) = 55 bytes; a later version may append "-...".
        guard bytes.count >= 55, bytes[2] == UInt8(ascii: "-"), bytes[35] == UInt8(ascii: "-"), bytes[52] == UInt8(ascii: "-"),
              let version = Self.hexByte(bytes[0], bytes[1]), version != 0xff,
              let flags = Self.hexByte(bytes[53], bytes[54])
        else { return nil }
        if version == 0 {
            guard bytes.count == 55 else { return nil }
        } else if bytes.count > 55, bytes[55] != UInt8(ascii: "-") {
            return nil
        }
        self.init(
            traceID: String(decoding: bytes[3..<35], as: UTF8.self),
            parentID: String(decoding: bytes[36..<52], as: UTF8.self),
            flags: flags
        )
    }

    /// Whether the sender records this trace (flag bit 0).
    public var isSampled: Bool { flags & 1 == 1 }

    /// The same trace, sent by the span `parentID`.
    public func sent(by parentID: String) -> TraceParent? {
        TraceParent(traceID: traceID, parentID: parentID, flags: flags)
    }

    /// The header value, always version `00`.
    public var description: String {
        let hex = Array("0123456789abcdef".utf8)
        let flagDigits = String(decoding: [hex[Int(flags >> 4)], hex[Int(flags & 0xf)]], as: UTF8.self)
        return "00-\(traceID)-\(parentID)-\(flagDigits)"
    }

    /// A random id of `count` hex digits (16 for a span id, 32 for a trace id), never all zeros.
    public static func randomID(hexDigits count: Int) -> String {
        let hex = Array("0123456789abcdef".utf8)
        var generator = SystemRandomNumberGenerator()
        while true {
            var digits: [UInt8] = []
            digits.reserveCapacity(count)
            for _ in 0..<count { digits.append(hex[Int(generator.next() & 0xf)]) }
            if digits.contains(where: { $0 != UInt8(ascii: "0") }) { return String(decoding: digits, as: UTF8.self) }
        }
    }

    private static func isID(_ utf8: String.UTF8View, count: Int) -> Bool {
        var length = 0
        var nonZero = false
        for byte in utf8 {
            guard hexValue(byte) != nil else { return false }
            if byte != UInt8(ascii: "0") { nonZero = true }
            length += 1
        }
        return length == count && nonZero
    }

    /// Lowercase hex only, as the specification requires.
    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        default: return nil
        }
    }

    private static func hexByte(_ high: UInt8, _ low: UInt8) -> UInt8? {
        guard let high = hexValue(high), let low = hexValue(low) else { return nil }
        return high << 4 | low
    }
}

extension ServiceContext {
    /// The `traceparent` a request arrived with, kept so that the requests it causes carry the same
    /// trace id even when no tracer is bootstrapped (see ``WireTracing``).
    public var traceParent: TraceParent? {
        get { self[TraceParentKey.self] }
        set { self[TraceParentKey.self] = newValue }
    }
}

private enum TraceParentKey: ServiceContextKey {
    typealias Value = TraceParent
    static var nameOverride: String? { "traceparent" }
}
