/// A value being built by ``WireEncoderImpl``; containers share it by reference, as `Encoder`'s
/// container API requires.
final class EncodedNode {
    enum Value {
        case empty
        case null
        case bool(Bool)
        /// The number's JSON text.
        case number(String)
        case string(String)
        /// Bytes already known to be one valid JSON value (a ``RawJSON`` payload), written as they are.
        case raw([UInt8])
        case array([EncodedNode])
        case object(keys: [String], values: [EncodedNode])
    }

    var value: Value = .empty

    func member(_ key: String) -> EncodedNode {
        guard case .object(var keys, var values) = value else {
            let node = EncodedNode()
            value = .object(keys: [key], values: [node])
            return node
        }
        if let index = keys.firstIndex(of: key) { return values[index] }
        let node = EncodedNode()
        // Drop the enum's copy first so the arrays stay uniquely referenced and append in place.
        value = .empty
        keys.append(key)
        values.append(node)
        value = .object(keys: keys, values: values)
        return node
    }

    func appendElement() -> EncodedNode {
        guard case .array(var elements) = value else {
            let node = EncodedNode()
            value = .array([node])
            return node
        }
        let node = EncodedNode()
        value = .empty
        elements.append(node)
        value = .array(elements)
        return node
    }

    func becomeObject() {
        if case .object = value { return }
        value = .object(keys: [], values: [])
    }

    func becomeArray() {
        if case .array = value { return }
        value = .array([])
    }

    /// Appends this value's compact JSON text to `out`.
    func write(to out: inout [UInt8]) {
        switch value {
        case .empty:
            out.append(contentsOf: "{}".utf8)
        case .null:
            out.append(contentsOf: "null".utf8)
        case .bool(let flag):
            out.append(contentsOf: (flag ? "true" : "false").utf8)
        case .number(let text):
            out.append(contentsOf: text.utf8)
        case .string(let text):
            JSONText.writeString(text, to: &out)
        case .raw(let bytes):
            out.append(contentsOf: bytes)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                element.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let keys, let values):
            out.append(UInt8(ascii: "{"))
            for index in keys.indices {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONText.writeString(keys[index], to: &out)
                out.append(UInt8(ascii: ":"))
                values[index].write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }
}

/// Writing JSON text.
enum JSONText {
    /// Appends `text` as a JSON string literal, escaping what RFC 8259 requires.
    static func writeString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                let digits = Array("0123456789abcdef".utf8)
                out.append(contentsOf: Array("\\u00".utf8))
                out.append(digits[Int(byte >> 4)])
                out.append(digits[Int(byte & 0x0F)])
            default:
                out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// An `Encoder` that builds an ``EncodedNode`` tree, writing ``RawJSON`` payloads as their bytes.
struct WireEncoderImpl: Encoder, SingleValueEncodingContainer {
    let node: EncodedNode
    let codingPath: [any CodingKey]

    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        node.becomeObject()
        return KeyedEncodingContainer(WireKeyedEncodingContainer<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        node.becomeArray()
        return WireUnkeyedEncodingContainer(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { self }

    // MARK: SingleValueEncodingContainer

    func encodeNil() { node.value = .null }
    func encode(_ value: Bool) { node.value = .bool(value) }
    func encode(_ value: String) { node.value = .string(value) }
    func encode(_ value: Double) throws { try encodeFloat(value) }
    func encode(_ value: Float) throws { try encodeFloat(value) }
    func encode(_ value: Int) { node.value = .number(String(value)) }
    func encode(_ value: Int8) { node.value = .number(String(value)) }
    func encode(_ value: Int16) { node.value = .number(String(value)) }
    func encode(_ value: Int32) { node.value = .number(String(value)) }
    func encode(_ value: Int64) { node.value = .number(String(value)) }
    func encode(_ value: UInt) { node.value = .number(String(value)) }
    func encode(_ value: UInt8) { node.value = .number(String(value)) }
    func encode(_ value: UInt16) { node.value = .number(String(value)) }
    func encode(_ value: UInt32) { node.value = .number(String(value)) }
    func encode(_ value: UInt64) { node.value = .number(String(value)) }
    func encode<T: Encodable>(_ value: T) throws { try value.encode(to: self) }

    private func encodeFloat<T: BinaryFloatingPoint & CustomStringConvertible>(_ value: T) throws {
        guard value.isFinite else {
            throw EncodingError.invalidValue(
                value,
                .init(codingPath: codingPath, debugDescription: "JSON cannot represent \(value)")
            )
        }
        // Swift prints the shortest text that reads back as the same value ("0.1", "1e-05").
        node.value = .number(value.description)
    }
}

struct WireKeyedEncodingContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: EncodedNode
    let codingPath: [any CodingKey]

    private func child(_ key: Key) -> WireEncoderImpl {
        WireEncoderImpl(node: node.member(key.stringValue), codingPath: codingPath + [key])
    }

    mutating func encodeNil(forKey key: Key) { child(key).encodeNil() }
    mutating func encode(_ value: Bool, forKey key: Key) { child(key).encode(value) }
    mutating func encode(_ value: String, forKey key: Key) { child(key).encode(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { try child(key).encode(value) }
    mutating func encode(_ value: Int, forKey key: Key) { child(key).encode(value) }
    mutating func encode(_ value: Int8, forKey key: Key) { child(key).encode(value) }
    mutating func encode(_ value: Int16, forKey key: Key) { child(key).encode(value) }
    mutating func encode(_ value: Int32, forKey key: Key) { child(key).encode(value) }
    mutating func encode(_ value: Int64, forKey key: Key) { child(key).encode(value) }
    mutating func encode(_ value: UInt, forKey key: Key) { child(key).encode(value) }
    mutating func encode(_ value: UInt8, forKey key: Key) { child(key).encode(value) }
    mutating func encode(_ value: UInt16, forKey key: Key) { child(key).encode(value) }
    mutating func encode(_ value: UInt32, forKey key: Key) { child(key).encode(value) }
    mutating func encode(_ value: UInt64, forKey key: Key) { child(key).encode(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try value.encode(to: child(key)) }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type,
        forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        child(key).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        child(key).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { child(Key(stringValue: "super")!) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { child(key) }
}

struct WireUnkeyedEncodingContainer: UnkeyedEncodingContainer {
    let node: EncodedNode
    let codingPath: [any CodingKey]

    var count: Int {
        if case .array(let elements) = node.value { return elements.count }
        return 0
    }

    private func next() -> WireEncoderImpl {
        let index = count
        return WireEncoderImpl(node: node.appendElement(), codingPath: codingPath + [WireIndexKey(index)])
    }

    mutating func encodeNil() { next().encodeNil() }
    mutating func encode(_ value: Bool) { next().encode(value) }
    mutating func encode(_ value: String) { next().encode(value) }
    mutating func encode(_ value: Double) throws { try next().encode(value) }
    mutating func encode(_ value: Float) throws { try next().encode(value) }
    mutating func encode(_ value: Int) { next().encode(value) }
    mutating func encode(_ value: Int8) { next().encode(value) }
    mutating func encode(_ value: Int16) { next().encode(value) }
    mutating func encode(_ value: Int32) { next().encode(value) }
    mutating func encode(_ value: Int64) { next().encode(value) }
    mutating func encode(_ value: UInt) { next().encode(value) }
    mutating func encode(_ value: UInt8) { next().encode(value) }
    mutating func encode(_ value: UInt16) { next().encode(value) }
    mutating func encode(_ value: UInt32) { next().encode(value) }
    mutating func encode(_ value: UInt64) { next().encode(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try value.encode(to: next()) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        next().container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        next().unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { next() }
}
