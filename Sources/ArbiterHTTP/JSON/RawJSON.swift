public import ArbiterCore

/// One JSON value kept as its exact bytes: a branch's payload on the wire.
///
/// With ``WireJSON`` the bytes go through untouched in both directions: decoding slices them out
/// of the request body (no whitespace around the value), and encoding writes them into the output
/// as they are. That is what lets a payload travel client → coordinator → participant and arrive
/// byte for byte as the client sent it. With any other coder (Foundation's `JSONEncoder`, say) the
/// value is decoded and re-encoded: the same JSON value, not necessarily the same bytes.
public struct RawJSON: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The value's JSON text, UTF-8; always exactly one valid JSON value.
    public let bytes: [UInt8]

    /// Checks that `bytes` hold exactly one JSON value (surrounding whitespace allowed and dropped).
    ///
    /// - Throws: ``APIError`` with code `invalid_json` saying where the text stops being JSON.
    public init(validating bytes: [UInt8]) throws(APIError) {
        let node: JSONNode
        do {
            node = try JSONParser.parse(bytes)
        } catch {
            throw APIError.invalidJSON(error.description)
        }
        self.bytes = node.range == bytes.indices ? bytes : Array(bytes[node.range])
    }

    /// Checks that `text` is exactly one JSON value.
    public init(validating text: String) throws(APIError) {
        try self.init(validating: Array(text.utf8))
    }

    /// Wraps bytes already known to be one valid JSON value without surrounding whitespace.
    init(trusted bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// The payload's JSON text.
    public var description: String { String(decoding: bytes, as: UTF8.self) }

    public init(from decoder: any Decoder) throws {
        if let wire = decoder as? WireDecoderImpl {
            self.bytes = Array(wire.bytes[wire.node.range])
            return
        }
        let value = try JSONValue(from: decoder)
        var out: [UInt8] = []
        value.write(to: &out)
        self.bytes = out
    }

    public func encode(to encoder: any Encoder) throws {
        if let wire = encoder as? WireEncoderImpl {
            wire.node.value = .raw(bytes)
            return
        }
        // A foreign encoder: hand it the value's structure.
        let node = try JSONParser.parse(bytes)
        try JSONValue(node, bytes: bytes).encode(to: encoder)
    }
}

extension RawJSON {
    /// The payload as the core carries it: the same bytes.
    public var payload: Payload { Payload(bytes) }

    /// Checks that a core payload holds one JSON value and wraps its bytes.
    ///
    /// - Throws: ``APIError`` `invalid_json` when the payload's bytes are not JSON.
    public init(_ payload: Payload) throws(APIError) {
        try self.init(validating: payload.bytes)
    }
}

/// A JSON value as a tree, used only when ``RawJSON`` meets a coder other than ``WireJSON``.
enum JSONValue: Codable {
    case null
    case bool(Bool)
    /// The number's JSON text.
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    init(_ node: JSONNode, bytes: [UInt8]) {
        switch node.kind {
        case .null: self = .null
        case .bool(let flag): self = .bool(flag)
        case .number: self = .number(String(decoding: bytes[node.range], as: UTF8.self))
        case .string(let text): self = .string(text)
        case .array(let elements): self = .array(elements.map { JSONValue($0, bytes: bytes) })
        case .object(let members): self = .object(members.map { ($0.key, JSONValue($0.value, bytes: bytes)) })
        }
    }

    init(from decoder: any Decoder) throws {
        if let keyed = try? decoder.container(keyedBy: WireNameKey.self) {
            var members: [(String, JSONValue)] = []
            for key in keyed.allKeys.sorted(by: { $0.stringValue < $1.stringValue }) {
                members.append((key.stringValue, try keyed.decode(JSONValue.self, forKey: key)))
            }
            self = .object(members)
            return
        }
        if var unkeyed = try? decoder.unkeyedContainer() {
            var elements: [JSONValue] = []
            while !unkeyed.isAtEnd { elements.append(try unkeyed.decode(JSONValue.self)) }
            self = .array(elements)
            return
        }
        let single = try decoder.singleValueContainer()
        if single.decodeNil() {
            self = .null
        } else if let flag = try? single.decode(Bool.self) {
            self = .bool(flag)
        } else if let integer = try? single.decode(Int64.self) {
            self = .number(String(integer))
        } else if let number = try? single.decode(Double.self) {
            self = .number(number.description)
        } else {
            self = .string(try single.decode(String.self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        switch self {
        case .null:
            var single = encoder.singleValueContainer()
            try single.encodeNil()
        case .bool(let flag):
            var single = encoder.singleValueContainer()
            try single.encode(flag)
        case .number(let text):
            var single = encoder.singleValueContainer()
            if let integer = Int64(text) {
                try single.encode(integer)
            } else {
                try single.encode(Double(text) ?? 0)
            }
        case .string(let text):
            var single = encoder.singleValueContainer()
            try single.encode(text)
        case .array(let elements):
            var unkeyed = encoder.unkeyedContainer()
            for element in elements { try unkeyed.encode(element) }
        case .object(let members):
            var keyed = encoder.container(keyedBy: WireNameKey.self)
            for (key, value) in members { try keyed.encode(value, forKey: WireNameKey(key)) }
        }
    }

    func write(to out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let flag): out.append(contentsOf: (flag ? "true" : "false").utf8)
        case .number(let text): out.append(contentsOf: text.utf8)
        case .string(let text): JSONText.writeString(text, to: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                element.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (index, member) in members.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONText.writeString(member.0, to: &out)
                out.append(UInt8(ascii: ":"))
                member.1.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }
}
