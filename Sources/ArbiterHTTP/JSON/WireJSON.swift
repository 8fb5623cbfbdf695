public import NIOCore

/// The JSON coder of the wire protocol.
///
/// Decoding is strict (see ``JSONParser``'s rules; integers must be written as integers) and
/// reports every failure as an ``APIError`` with a field path. Unknown members are ignored, so
/// that a newer peer may add optional fields. Encoding is compact, keeps the declared field order,
/// omits `nil` optionals and writes ``RawJSON`` payloads byte for byte. The batch bodies between
/// coordinator and participants write themselves (``DirectJSONWritable``), to the same bytes, and
/// read themselves when they are in their plain form (``DirectJSONReadable``), to the same values.
public enum WireJSON {
    /// Decodes one `T` from `bytes`.
    ///
    /// - Throws: ``APIError`` `invalid_json`, `missing_field`, `wrong_type` or `invalid_value`.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws(APIError) -> T {
        if let direct = T.self as? any DirectJSONReadable.Type, let value = direct.readJSON(bytes) as? T {
            return value
        }
        return try decodeThroughTree(type, from: bytes)
    }

    /// Decodes `bytes` through a tree of nodes and `T`'s `Decodable` conformance: what every type
    /// gets but the plain bodies of ``DirectJSONReadable``, and what decides and reports errors.
    static func decodeThroughTree<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws(APIError) -> T {
        let node: JSONNode
        do {
            node = try JSONParser.parse(bytes)
        } catch {
            throw APIError.invalidJSON(error.description)
        }
        do {
            return try T(from: WireDecoderImpl(bytes: bytes, node: node, codingPath: []))
        } catch let error as DecodingError {
            throw APIError(error)
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError.invalidValue(nil, "\(error)")
        }
    }

    /// Decodes one `T` from the readable bytes of `buffer`.
    public static func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer) throws(APIError) -> T {
        try decode(type, from: Array(buffer.readableBytesView))
    }

    /// Encodes `value` as compact JSON.
    ///
    /// - Throws: `EncodingError` only for values JSON cannot represent (a non-finite number); the
    ///   wire types never hold one.
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        if let direct = value as? any DirectJSONWritable {
            var out: [UInt8] = []
            out.reserveCapacity(1024)
            if direct.writeJSON(to: &out) { return out }
        }
        return try encodeThroughTree(value)
    }

    /// Encodes `value` through its `Encodable` conformance, building a tree of nodes and writing
    /// it: what every type but the few of ``DirectJSONWritable`` gets.
    static func encodeThroughTree<T: Encodable>(_ value: T) throws -> [UInt8] {
        let root = EncodedNode()
        try value.encode(to: WireEncoderImpl(node: root, codingPath: []))
        var out: [UInt8] = []
        out.reserveCapacity(256)
        root.write(to: &out)
        return out
    }

    /// Encodes `value` as compact JSON into a new buffer.
    public static func encodeBuffer<T: Encodable>(_ value: T, allocator: ByteBufferAllocator = ByteBufferAllocator()) throws -> ByteBuffer {
        let bytes = try encode(value)
        var buffer = allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        return buffer
    }
}
