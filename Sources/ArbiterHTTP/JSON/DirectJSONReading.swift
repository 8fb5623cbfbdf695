// The batch bodies between the coordinator and its participants, read from their bytes directly
// instead of through a tree of nodes and `Decodable`'s containers; and the clients' submits.
//
// ``WireJSON/decode(_:from:)`` parses a body into a tree (``JSONNode``: a `String` per key, an array
// per object) and then walks it through `Codable`'s keyed containers. The batches of prepares,
// commits and aborts (at a participant), their replies (at the coordinator) and the clients'
// submits are read for every transaction, so under load that cost showed in both services'
// profiles.
//
// The readers here take only the plain shape those bodies have in practice: the known members,
// each once, strings of printable ASCII without escapes, booleans as `true`/`false`. Anything else
// — an escape, a non-ASCII reason, an unknown or repeated member, an error reply, a syntax error —
// makes them return nil, and the body goes through the general decoder, which decides and reports
// errors exactly as before. So a body either reads the same both ways or is not read here at all;
// a test compares the two ways.

/// A wire body that can read itself from the plain form of its JSON.
protocol DirectJSONReadable {
    /// The value `bytes` hold, or nil when they are not in the plain form this reader takes (they
    /// may still be valid: the general decoder decides).
    static func readJSON(_ bytes: [UInt8]) -> Self?
}

extension BatchRequest: DirectJSONReadable {
    static func readJSON(_ bytes: [UInt8]) -> BatchRequest? {
        PlainJSONReader.readList(bytes, member: "messages", readMessage).map(BatchRequest.init(messages:))
    }

    private static func readMessage(_ reader: inout PlainJSONReader) throws(PlainJSONReader.NotPlain) -> BatchMessage {
        var type: BatchMessageType?
        var txid: String?
        var coordinator: String?
        var payload: RawJSON?
        var onePhase: Bool?
        var traceparent: String?
        try reader.readObject { reader, key throws(PlainJSONReader.NotPlain) in
            switch key {
            case "type" where type == nil: type = try reader.readEnum(BatchMessageType.self)
            case "txid" where txid == nil: txid = try reader.readString()
            case "coordinator" where coordinator == nil: coordinator = try reader.readString()
            case "payload" where payload == nil: payload = try reader.readRaw()
            case "onePhase" where onePhase == nil: onePhase = try reader.readBool()
            case "traceparent" where traceparent == nil: traceparent = try reader.readString()
            default: throw .notPlain
            }
        }
        switch type {
        case .prepare:
            guard let txid, let coordinator, let payload else { throw .notPlain }
            return .prepare(
                PrepareBody(txid: txid, coordinator: coordinator, payload: payload, onePhase: onePhase, traceparent: traceparent)
            )
        case .commit, .abort:
            guard let txid, coordinator == nil, payload == nil, onePhase == nil else { throw .notPlain }
            let body = DecisionBody(txid: txid, traceparent: traceparent)
            return type == .commit ? .commit(body) : .abort(body)
        case nil:
            throw .notPlain
        }
    }
}

extension BatchResponse: DirectJSONReadable {
    static func readJSON(_ bytes: [UInt8]) -> BatchResponse? {
        PlainJSONReader.readList(bytes, member: "replies", readReply).map(BatchResponse.init(replies:))
    }

    /// A prepare, commit or abort reply; an error reply (rare) is left to the general decoder.
    private static func readReply(_ reader: inout PlainJSONReader) throws(PlainJSONReader.NotPlain) -> BatchReply {
        var type: BatchReply.ReplyType?
        var txid: String?
        var vote: WireVote?
        var reason: String?
        var outcome: WireOutcome?
        var state: WireLocalOutcome?
        try reader.readObject { reader, key throws(PlainJSONReader.NotPlain) in
            switch key {
            case "type" where type == nil: type = try reader.readEnum(BatchReply.ReplyType.self)
            case "txid" where txid == nil: txid = try reader.readString()
            case "vote" where vote == nil: vote = try reader.readEnum(WireVote.self)
            case "reason" where reason == nil: reason = try reader.readString()
            case "outcome" where outcome == nil: outcome = try reader.readEnum(WireOutcome.self)
            case "state" where state == nil: state = try reader.readEnum(WireLocalOutcome.self)
            default: throw .notPlain
            }
        }
        guard let type, let txid else { throw .notPlain }
        switch type {
        case .prepare:
            guard state == nil else { throw .notPlain }
            switch (vote, outcome) {
            case (let vote?, nil): return .prepare(.vote(txid: txid, vote: vote, reason: reason))
            case (nil, let outcome?) where reason == nil: return .prepare(.outcome(txid: txid, outcome: outcome))
            default: throw .notPlain
            }
        case .commit, .abort:
            guard let state, vote == nil, reason == nil, outcome == nil else { throw .notPlain }
            let acknowledgement = AcknowledgeReply(txid: txid, state: state)
            return type == .commit ? .commit(acknowledgement) : .abort(acknowledgement)
        case .error:
            throw .notPlain
        }
    }
}

extension SubmitRequest: DirectJSONReadable {
    static func readJSON(_ bytes: [UInt8]) -> SubmitRequest? {
        var reader = PlainJSONReader(bytes)
        var request: SubmitRequest?
        let read = reader.readDocument { reader throws(PlainJSONReader.NotPlain) in request = try readSubmit(&reader) }
        return read ? request : nil
    }

    /// A submission without `timeoutMs` (a number is left to the general decoder, which checks
    /// that it is an integer and fits).
    static func readSubmit(_ reader: inout PlainJSONReader) throws(PlainJSONReader.NotPlain) -> SubmitRequest {
        var id: String?
        var branches: [BranchBody]?
        var wait: WaitMode?
        try reader.readObject { reader, key throws(PlainJSONReader.NotPlain) in
            switch key {
            case "id" where id == nil: id = try reader.readString()
            case "wait" where wait == nil: wait = try reader.readEnum(WaitMode.self)
            case "branches" where branches == nil:
                var list: [BranchBody] = []
                try reader.readArray { reader throws(PlainJSONReader.NotPlain) in list.append(try readBranch(&reader)) }
                branches = list
            default: throw .notPlain
            }
        }
        guard let branches else { throw .notPlain }
        return SubmitRequest(id: id, branches: branches, wait: wait)
    }

    private static func readBranch(_ reader: inout PlainJSONReader) throws(PlainJSONReader.NotPlain) -> BranchBody {
        var participant: String?
        var payload: RawJSON?
        try reader.readObject { reader, key throws(PlainJSONReader.NotPlain) in
            switch key {
            case "participant" where participant == nil: participant = try reader.readString()
            case "payload" where payload == nil: payload = try reader.readRaw()
            default: throw .notPlain
            }
        }
        guard let participant, let payload else { throw .notPlain }
        return BranchBody(participant: participant, payload: payload)
    }
}

extension SubmitBatchRequest: DirectJSONReadable {
    static func readJSON(_ bytes: [UInt8]) -> SubmitBatchRequest? {
        PlainJSONReader.readList(bytes, member: "transactions", SubmitRequest.readSubmit).map(SubmitBatchRequest.init(transactions:))
    }
}

/// A forward-only reader of the plain JSON the direct readers take (see the file's header). Every
/// method throws ``NotPlain`` at the first byte it does not take.
struct PlainJSONReader {
    /// The input is not in the plain form (it may still be valid JSON).
    enum NotPlain: Error { case notPlain }

    private let bytes: [UInt8]
    private var index = 0
    /// Containers open around the reader's position, for the nesting limit.
    private var depth = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The elements of `{"member": [element, …]}`, the whole of `bytes`, each read by `element`;
    /// nil when any of it is not plain.
    static func readList<Element>(
        _ bytes: [UInt8], member: String, _ element: (inout PlainJSONReader) throws(NotPlain) -> Element
    ) -> [Element]? {
        var reader = PlainJSONReader(bytes)
        var elements: [Element] = []
        let read = reader.readDocument(member: member) { reader throws(NotPlain) in
            try reader.readArray { reader throws(NotPlain) in elements.append(try element(&reader)) }
        }
        return read ? elements : nil
    }

    /// Reads `{"member": …}` and nothing after it but whitespace, `body` reading the member's value.
    /// Returns whether all of it was plain.
    mutating func readDocument(member: String, _ body: (inout PlainJSONReader) throws(NotPlain) -> Void) -> Bool {
        var seen = false
        let read = readDocument { reader throws(NotPlain) in
            try reader.readObject { reader, key throws(NotPlain) in
                guard key == member, !seen else { throw .notPlain }
                seen = true
                try body(&reader)
            }
        }
        return read && seen
    }

    /// Runs `body`, which reads one value, and checks that nothing but whitespace follows it.
    /// Returns whether all of it was plain.
    mutating func readDocument(_ body: (inout PlainJSONReader) throws(NotPlain) -> Void) -> Bool {
        do {
            try body(&self)
            skipWhitespace()
            return index == bytes.endIndex
        } catch {
            return false
        }
    }

    /// Reads an object, calling `member` with each key, positioned at its value, which it must read.
    mutating func readObject(_ member: (inout PlainJSONReader, String) throws(NotPlain) -> Void) throws(NotPlain) {
        try readContainer(UInt8(ascii: "{"), UInt8(ascii: "}")) { reader throws(NotPlain) in
            let key = try reader.readString()
            reader.skipWhitespace()
            try reader.expect(UInt8(ascii: ":"))
            try member(&reader, key)
        }
    }

    /// Reads an array, calling `element` positioned at each element, which it must read.
    mutating func readArray(_ element: (inout PlainJSONReader) throws(NotPlain) -> Void) throws(NotPlain) {
        try readContainer(UInt8(ascii: "["), UInt8(ascii: "]"), item: element)
    }

    /// Reads `opening`, items separated by commas, each read by `item`, and `closing`.
    private mutating func readContainer(
        _ opening: UInt8, _ closing: UInt8, item: (inout PlainJSONReader) throws(NotPlain) -> Void
    ) throws(NotPlain) {
        try enter(opening)
        skipWhitespace()
        if try peek() == closing {
            index += 1
            depth -= 1
            return
        }
        while true {
            try item(&self)
            skipWhitespace()
            let next = try take()
            if next == closing { break }
            guard next == UInt8(ascii: ",") else { throw .notPlain }
            skipWhitespace()
        }
        depth -= 1
    }

    /// Reads a string of printable ASCII without escapes.
    mutating func readString() throws(NotPlain) -> String {
        skipWhitespace()
        try expect(UInt8(ascii: "\""))
        let start = index
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let text = String(decoding: bytes[start..<index], as: UTF8.self)
                index += 1
                return text
            }
            guard byte >= 0x20, byte < 0x7F, byte != UInt8(ascii: "\\") else { throw .notPlain }
            index += 1
        }
        throw .notPlain
    }

    /// Reads a string that is one of `T`'s raw values.
    mutating func readEnum<T: WireEnum>(_ type: T.Type) throws(NotPlain) -> T {
        guard let value = T(rawValue: try readString()) else { throw .notPlain }
        return value
    }

    mutating func readBool() throws(NotPlain) -> Bool {
        skipWhitespace()
        if literal("true") { return true }
        if literal("false") { return false }
        throw .notPlain
    }

    /// Reads any one JSON value and keeps its exact bytes, checked by the strict ``JSONParser``
    /// (with room for the containers around it under the parser's nesting limit).
    mutating func readRaw() throws(NotPlain) -> RawJSON {
        skipWhitespace()
        let start = index
        var nesting = 0
        var deepest = 0
        scan: while index < bytes.endIndex {
            switch bytes[index] {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                nesting += 1
                deepest = max(deepest, nesting)
                index += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if nesting == 0 { break scan }
                nesting -= 1
                index += 1
                if nesting == 0 { break scan }
            case UInt8(ascii: "\""):
                index += 1
                while index < bytes.endIndex && bytes[index] != UInt8(ascii: "\"") {
                    index += bytes[index] == UInt8(ascii: "\\") ? 2 : 1
                }
                index += 1
                if nesting == 0 { break scan }
            case UInt8(ascii: ","), 0x20, 0x09, 0x0A, 0x0D:
                if nesting == 0 { break scan }
                index += 1
            default:
                index += 1
            }
        }
        guard index <= bytes.endIndex, index > start, depth + deepest <= JSONParser.depthMax else { throw .notPlain }
        do {
            _ = try JSONParser.parse(bytes, range: start..<index)
        } catch {
            throw .notPlain
        }
        return RawJSON(trusted: Array(bytes[start..<index]))
    }

    // MARK: Bytes

    private mutating func enter(_ opening: UInt8) throws(NotPlain) {
        skipWhitespace()
        try expect(opening)
        depth += 1
        guard depth <= JSONParser.depthMax else { throw .notPlain }
    }

    private mutating func skipWhitespace() {
        while index < bytes.endIndex {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private func peek() throws(NotPlain) -> UInt8 {
        guard index < bytes.endIndex else { throw .notPlain }
        return bytes[index]
    }

    private mutating func take() throws(NotPlain) -> UInt8 {
        let byte = try peek()
        index += 1
        return byte
    }

    private mutating func expect(_ byte: UInt8) throws(NotPlain) {
        guard try take() == byte else { throw .notPlain }
    }

    private mutating func literal(_ text: StaticString) -> Bool {
        let count = text.utf8CodeUnitCount
        guard index + count <= bytes.endIndex else { return false }
        let matches = text.withUTF8Buffer { expected in
            expected.indices.allSatisfy { bytes[index + $0] == expected[$0] }
        }
        if matches { index += count }
        return matches
    }
}
