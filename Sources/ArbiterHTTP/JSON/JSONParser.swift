/// A parsed JSON value that remembers the bytes it came from.
///
/// The wire decoder works on this tree instead of Foundation's `JSONDecoder` for three reasons: a
/// branch payload must keep its exact bytes (``RawJSON`` slices them out by ``range``), bad input
/// must be reported with a precise field path and byte offset, and duplicate keys must be refused
/// rather than silently resolved one way or the other.
struct JSONNode: Sendable {
    enum Kind: Sendable {
        case null
        case bool(Bool)
        /// A number; its text is `bytes[range]`, already checked against the JSON grammar.
        case number
        case string(String)
        case array([JSONNode])
        /// Members in document order; keys are unique (the parser refuses duplicates).
        case object([(key: String, value: JSONNode)])
    }

    var kind: Kind
    /// Where the value's text lies in the parsed bytes, without surrounding whitespace.
    var range: Range<Int>

    /// The JSON type's name, for error messages.
    var typeName: String {
        switch kind {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// Input that is not JSON (RFC 8259), with the byte offset where parsing stopped.
struct JSONSyntaxError: Error, Hashable, Sendable, CustomStringConvertible {
    var offset: Int
    var reason: String

    var description: String { "malformed JSON at byte \(offset): \(reason)" }
}

/// A strict RFC 8259 parser: no comments, no trailing commas, no leading zeros, no bare control
/// characters or invalid UTF-8 in strings, no duplicate keys, nothing but whitespace after the value.
///
/// Nesting is bounded by ``depthMax`` so that hostile input cannot exhaust the stack.
struct JSONParser {
    /// The deepest nesting of arrays and objects accepted.
    static let depthMax = 128

    private let bytes: [UInt8]
    private var index: Int
    private let end: Int
    private var depth = 0

    private init(bytes: [UInt8], range: Range<Int>) {
        self.bytes = bytes
        self.index = range.lowerBound
        self.end = range.upperBound
    }

    /// Parses `bytes` as exactly one JSON value.
    static func parse(_ bytes: [UInt8]) throws(JSONSyntaxError) -> JSONNode {
        try parse(bytes, range: bytes.indices)
    }

    /// Parses `bytes[range]` as exactly one JSON value.
    static func parse(_ bytes: [UInt8], range: Range<Int>) throws(JSONSyntaxError) -> JSONNode {
        var parser = JSONParser(bytes: bytes, range: range)
        parser.skipWhitespace()
        let node = try parser.parseValue()
        parser.skipWhitespace()
        if parser.index != parser.end {
            throw parser.error("unexpected \(parser.describeCurrent()) after the end of the value")
        }
        return node
    }

    // MARK: Values

    private mutating func parseValue() throws(JSONSyntaxError) -> JSONNode {
        guard index < end else { throw error("unexpected end of input; expected a value") }
        let start = index
        switch bytes[index] {
        case UInt8(ascii: "{"):
            return try parseObject()
        case UInt8(ascii: "["):
            return try parseArray()
        case UInt8(ascii: "\""):
            let text = try parseString()
            return JSONNode(kind: .string(text), range: start..<index)
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return JSONNode(kind: .bool(true), range: start..<index)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return JSONNode(kind: .bool(false), range: start..<index)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return JSONNode(kind: .null, range: start..<index)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try scanNumber()
            return JSONNode(kind: .number, range: start..<index)
        default:
            throw error("unexpected \(describeCurrent()); expected a value")
        }
    }

    private mutating func parseObject() throws(JSONSyntaxError) -> JSONNode {
        let start = index
        try enterContainer()
        index += 1  // {
        var members: [(key: String, value: JSONNode)] = []
        skipWhitespace()
        if index < end && bytes[index] == UInt8(ascii: "}") {
            index += 1
            depth -= 1
            return JSONNode(kind: .object(members), range: start..<index)
        }
        var keys = Set<String>()
        while true {
            skipWhitespace()
            guard index < end, bytes[index] == UInt8(ascii: "\"") else {
                throw error("unexpected \(describeCurrent()); expected a member name in double quotes")
            }
            let keyOffset = index
            let key = try parseString()
            if !keys.insert(key).inserted {
                throw JSONSyntaxError(offset: keyOffset, reason: "duplicate member name \"\(key)\"")
            }
            skipWhitespace()
            guard index < end, bytes[index] == UInt8(ascii: ":") else {
                throw error("unexpected \(describeCurrent()); expected ':' after a member name")
            }
            index += 1
            skipWhitespace()
            let value = try parseValue()
            members.append((key, value))
            skipWhitespace()
            guard index < end else { throw error("unexpected end of input; expected ',' or '}'") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            if bytes[index] == UInt8(ascii: "}") {
                index += 1
                break
            }
            throw error("unexpected \(describeCurrent()); expected ',' or '}'")
        }
        depth -= 1
        return JSONNode(kind: .object(members), range: start..<index)
    }

    private mutating func parseArray() throws(JSONSyntaxError) -> JSONNode {
        let start = index
        try enterContainer()
        index += 1  // [
        var elements: [JSONNode] = []
        skipWhitespace()
        if index < end && bytes[index] == UInt8(ascii: "]") {
            index += 1
            depth -= 1
            return JSONNode(kind: .array(elements), range: start..<index)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue())
            skipWhitespace()
            guard index < end else { throw error("unexpected end of input; expected ',' or ']'") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            if bytes[index] == UInt8(ascii: "]") {
                index += 1
                break
            }
            throw error("unexpected \(describeCurrent()); expected ',' or ']'")
        }
        depth -= 1
        return JSONNode(kind: .array(elements), range: start..<index)
    }

    private mutating func enterContainer() throws(JSONSyntaxError) {
        depth += 1
        if depth > JSONParser.depthMax {
            throw error("nesting deeper than \(JSONParser.depthMax) levels")
        }
    }

    // MARK: Strings

    /// Parses a string starting at the opening quote and leaves `index` after the closing one.
    private mutating func parseString() throws(JSONSyntaxError) -> String {
        index += 1  // opening quote
        let contentStart = index
        // Fast path: no escapes, so the text is the bytes themselves once UTF-8 is validated.
        while index < end {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let text = try validatedUTF8(bytes[contentStart..<index], offset: contentStart)
                index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw error("control character 0x\(hex(byte)) in a string; escape it") }
            index += 1
        }
        guard index < end else {
            throw JSONSyntaxError(offset: contentStart - 1, reason: "unterminated string")
        }
        // Slow path: decode escapes into a scratch buffer.
        var scratch = Array(bytes[contentStart..<index])
        while index < end {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                let text = try validatedUTF8(scratch[...], offset: contentStart)
                index += 1
                return text
            case UInt8(ascii: "\\"):
                try appendEscape(to: &scratch)
            case 0..<0x20:
                throw error("control character 0x\(hex(byte)) in a string; escape it")
            default:
                scratch.append(byte)
                index += 1
            }
        }
        throw JSONSyntaxError(offset: contentStart - 1, reason: "unterminated string")
    }

    private mutating func appendEscape(to scratch: inout [UInt8]) throws(JSONSyntaxError) {
        let escapeOffset = index
        index += 1  // backslash
        guard index < end else { throw error("unterminated escape sequence") }
        let byte = bytes[index]
        index += 1
        switch byte {
        case UInt8(ascii: "\""): scratch.append(UInt8(ascii: "\""))
        case UInt8(ascii: "\\"): scratch.append(UInt8(ascii: "\\"))
        case UInt8(ascii: "/"): scratch.append(UInt8(ascii: "/"))
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            let scalar = try parseUnicodeEscape(escapeOffset: escapeOffset)
            scratch.append(contentsOf: Array(String(Character(scalar)).utf8))
        default:
            throw JSONSyntaxError(offset: escapeOffset, reason: "invalid escape sequence '\\\(describe(byte))'")
        }
    }

    /// Parses the hex digits after `\u`, joining a surrogate pair into one scalar.
    private mutating func parseUnicodeEscape(escapeOffset: Int) throws(JSONSyntaxError) -> Unicode.Scalar {
        let first = try parseHex4(escapeOffset: escapeOffset)
        switch first {
        case 0xD800...0xDBFF:
            // A high surrogate must be followed by an escaped low surrogate.
            guard index + 1 < end, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                throw JSONSyntaxError(offset: escapeOffset, reason: "unpaired surrogate in a \\u escape")
            }
            index += 2
            let second = try parseHex4(escapeOffset: escapeOffset)
            guard (0xDC00...0xDFFF).contains(second) else {
                throw JSONSyntaxError(offset: escapeOffset, reason: "unpaired surrogate in a \\u escape")
            }
            let value = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            guard let scalar = Unicode.Scalar(value) else {
                throw JSONSyntaxError(offset: escapeOffset, reason: "invalid \\u escape")
            }
            return scalar
        case 0xDC00...0xDFFF:
            throw JSONSyntaxError(offset: escapeOffset, reason: "unpaired surrogate in a \\u escape")
        default:
            guard let scalar = Unicode.Scalar(first) else {
                throw JSONSyntaxError(offset: escapeOffset, reason: "invalid \\u escape")
            }
            return scalar
        }
    }

    private mutating func parseHex4(escapeOffset: Int) throws(JSONSyntaxError) -> UInt32 {
        guard index + 4 <= end else {
            throw JSONSyntaxError(offset: escapeOffset, reason: "\\u escape needs four hex digits")
        }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw JSONSyntaxError(offset: escapeOffset, reason: "\\u escape needs four hex digits")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    private func validatedUTF8(_ slice: ArraySlice<UInt8>, offset: Int) throws(JSONSyntaxError) -> String {
        // ASCII is by far the common case and needs no validation beyond this scan.
        if slice.allSatisfy({ $0 < 0x80 }) {
            return String(decoding: slice, as: UTF8.self)
        }
        guard let text = String(validating: slice, as: UTF8.self) else {
            throw JSONSyntaxError(offset: offset, reason: "string is not valid UTF-8")
        }
        return text
    }

    // MARK: Numbers and literals

    /// Checks `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?` and moves past it.
    private mutating func scanNumber() throws(JSONSyntaxError) {
        let start = index
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < end, isDigit(bytes[index]) else {
            throw JSONSyntaxError(offset: start, reason: "a number needs digits after '-'")
        }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if index < end && isDigit(bytes[index]) {
                throw JSONSyntaxError(offset: start, reason: "a number must not have leading zeros")
            }
        } else {
            skipDigits()
        }
        if index < end && bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard index < end, isDigit(bytes[index]) else {
                throw JSONSyntaxError(offset: start, reason: "a number needs digits after '.'")
            }
            skipDigits()
        }
        if index < end && (bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")) {
            index += 1
            if index < end && (bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-")) {
                index += 1
            }
            guard index < end, isDigit(bytes[index]) else {
                throw JSONSyntaxError(offset: start, reason: "a number needs digits in its exponent")
            }
            skipDigits()
        }
    }

    private mutating func skipDigits() {
        while index < end && isDigit(bytes[index]) { index += 1 }
    }

    private func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONSyntaxError) {
        let start = index
        let count = literal.utf8CodeUnitCount
        let matches = literal.withUTF8Buffer { expected in
            guard index + count <= end else { return false }
            for offset in 0..<count where bytes[index + offset] != expected[offset] {
                return false
            }
            return true
        }
        guard matches else {
            throw JSONSyntaxError(offset: start, reason: "unexpected \(describeCurrent()); expected a value")
        }
        index += count
    }

    private mutating func skipWhitespace() {
        while index < end {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    // MARK: Errors

    private func error(_ reason: String) -> JSONSyntaxError {
        JSONSyntaxError(offset: index, reason: reason)
    }

    private func describeCurrent() -> String {
        guard index < end else { return "end of input" }
        return "'\(describe(bytes[index]))'"
    }

    private func describe(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F { return String(UnicodeScalar(byte)) }
        return "0x" + hex(byte)
    }

    private func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
    }
}
