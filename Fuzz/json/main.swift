// A libFuzzer harness for the wire protocol's hand-written JSON: the strict parser (JSONParser),
// the tree decoder (WireDecoderImpl), the direct readers of the hot bodies (PlainJSONReader), the
// encoders, and the checks that turn request bodies into core values (`validated`).
//
// run.sh compiles this file into one module with those sources of ArbiterHTTP, so it reaches their
// internal API. Every input is read as JSON and as every request and reply body of both APIs; a
// crash, a sanitizer report or a broken property below is a finding. The properties:
//
// - the parser and RawJSON agree on what is JSON, and what the parser accepts writes back (compact)
//   to text that parses and writes to the same text again;
// - a body that decodes encodes to JSON that decodes to the same value;
// - a body the direct reader takes is the value the tree decoder makes of it;
// - a body the direct writer writes is byte for byte what the general encoder writes;
// - every error, rendered as the API's error body, is JSON that reads back to the same error.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // The input is parsed once and the tree decoded as every body (WireJSON.decode would parse it
    // again for each); WireJSON.decode itself runs for the bodies with a direct reader, and on
    // every round trip.
    if let node = checkParser(bytes) {
        let input = Input(bytes: bytes, node: node)
        input.checkBody(SubmitRequest.self) { body throws(APIError) in try body.validated(limits: .default) }
        input.checkBody(SubmitBatchRequest.self) { body throws(APIError) in try body.validated(limits: .default) }
        input.checkBody(PrepareBody.self) { body throws(APIError) in try body.validated(limits: .default) }
        input.checkBody(DecisionBody.self) { body throws(APIError) in try body.validated() }
        input.checkBody(BatchRequest.self) { body throws(APIError) in try body.validated(limits: .default) }
        input.checkBody(BatchResponse.self) { response throws(APIError) in
            for reply in response.replies { _ = try reply.result() }
        }
        input.checkBody(PrepareReply.self) { body throws(APIError) in try body.message() }
        input.checkBody(AcknowledgeReply.self) { body throws(APIError) in try body.message() }
        input.checkBody(OutcomeResponse.self) { body throws(APIError) in try body.message() }
        input.checkBody(SubmitResponse.self) { _ throws(APIError) in }
        input.checkBody(SubmitBatchResult.self) { _ throws(APIError) in }
        input.checkBody(TransactionPage.self) { _ throws(APIError) in }
        input.checkBody(ErrorResponse.self) { _ throws(APIError) in }
    } else {
        // Not JSON: every body is refused, and no direct reader may take it.
        for direct in directReadable where direct.readJSON(bytes) != nil {
            violated("the direct reader of \(direct) takes what is not JSON", bytes)
        }
    }
    checkText(bytes)
    return 0
}

nonisolated(unsafe) let directReadable: [any DirectJSONReadable.Type] = [
    SubmitRequest.self, SubmitBatchRequest.self, BatchRequest.self, BatchResponse.self,
]

/// Stops the run with a message libFuzzer shows with the input that caused it.
func violated(_ property: String, _ bytes: [UInt8]) -> Never {
    fatalError("property violated: \(property); input: \(String(decoding: bytes, as: UTF8.self).debugDescription)")
}

// MARK: The parser

/// Parses `bytes`; returns the tree, or nil when they are not JSON, after checking the parser's
/// properties.
func checkParser(_ bytes: [UInt8]) -> JSONNode? {
    let node: JSONNode
    do {
        node = try JSONParser.parse(bytes)
    } catch {
        guard error.offset >= 0, error.offset <= bytes.count else { violated("error offset \(error.offset) outside the input", bytes) }
        do {
            _ = try RawJSON(validating: bytes)
            violated("RawJSON accepts what the parser refuses", bytes)
        } catch {
            checkErrorBody(error, bytes)
        }
        return nil
    }
    guard node.range.lowerBound >= 0, node.range.upperBound <= bytes.count else { violated("node range outside the input", bytes) }
    guard let raw = try? RawJSON(validating: bytes) else { violated("RawJSON refuses what the parser accepts", bytes) }
    guard raw.bytes == Array(bytes[node.range]) else { violated("RawJSON keeps other bytes than the value's", bytes) }

    // Written back compactly, the value parses, and writes to the same text again.
    var once: [UInt8] = []
    JSONValue(node, bytes: bytes).write(to: &once)
    guard let reparsed = try? JSONParser.parse(once) else { violated("the written value is not JSON: \(String(decoding: once, as: UTF8.self))", bytes) }
    var twice: [UInt8] = []
    JSONValue(reparsed, bytes: once).write(to: &twice)
    guard once == twice else { violated("writing is not a fixed point", bytes) }
    return node
}

// MARK: Bodies

/// An input that is JSON, with its tree.
struct Input {
    var bytes: [UInt8]
    var node: JSONNode

    /// Decodes the tree as `T`, as WireJSON.decode does after parsing.
    func decode<T: Decodable>(_ type: T.Type) throws(APIError) -> T {
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

    /// Decodes the input as `T`; on success checks the round trip, the direct reader and writer,
    /// and runs `validate`; on failure checks the error body and that no direct reader takes it.
    func checkBody<T: Codable & Hashable, Checked>(_ type: T.Type, validate: (T) throws(APIError) -> Checked) {
        let direct = (T.self as? any DirectJSONReadable.Type)?.readJSON(bytes)
        let value: T
        do {
            value = try decode(type)
        } catch {
            checkErrorBody(error, bytes)
            if direct != nil { violated("the direct reader takes a body the decoder refuses (\(T.self): \(error))", bytes) }
            return
        }
        if let direct, direct as? T != value {
            violated("the direct reader and the tree decoder disagree (\(T.self))", bytes)
        }
        let encoded: [UInt8]
        do {
            encoded = try WireJSON.encode(value)
        } catch {
            violated("a decoded \(T.self) does not encode: \(error)", bytes)
        }
        if value is any DirectJSONWritable {
            guard let general = try? WireJSON.encodeThroughTree(value), general == encoded else {
                violated("the direct writer and the general encoder write different bytes (\(T.self))", bytes)
            }
        }
        do {
            let again = try WireJSON.decode(type, from: encoded)
            guard again == value else { violated("the round trip changes the \(T.self)", bytes) }
        } catch {
            violated("an encoded \(T.self) does not decode: \(error); encoded: \(String(decoding: encoded, as: UTF8.self))", bytes)
        }
        do {
            _ = try validate(value)
        } catch {
            checkErrorBody(error, bytes)
        }
    }
}

/// The error body the middleware would send for `error` is JSON that reads back to the same error.
func checkErrorBody(_ error: APIError, _ bytes: [UInt8]) {
    guard (400...599).contains(error.status.code) else { violated("a decoding error with status \(error.status.code)", bytes) }
    let body = ErrorResponse(error)
    guard let encoded = try? WireJSON.encode(body) else { violated("an error body does not encode", bytes) }
    guard let decoded = try? WireJSON.decode(ErrorResponse.self, from: encoded), decoded == body else {
        violated("an error body does not read back: \(String(decoding: encoded, as: UTF8.self))", bytes)
    }
}

// MARK: Text fields

/// The input as the text of a path parameter, a transaction id, a service URL and a listing's
/// query: the checks of what is not a JSON body.
func checkText(_ bytes: [UInt8]) {
    guard bytes.count <= 4096, let raw = String(validating: bytes, as: UTF8.self) else { return }
    // A path parameter: decoding what encoding made gives it back; an id is checked decoded.
    guard PercentEncoding.decoded(PercentEncoding.encoded(raw)) == raw else { violated("percent-encoding does not round-trip", bytes) }
    let text = PercentEncoding.decoded(raw) ?? raw
    checkListQuery(raw, bytes)
    do {
        let txid = try WireValidation.txid(text, field: "id")
        guard txid.rawValue == text else { violated("a valid id changes", bytes) }
    } catch {
        checkErrorBody(error, bytes)
    }
    do {
        let url = try WireValidation.serviceURL(text, field: "participant", limits: .default)
        guard text.hasPrefix(url), !url.hasSuffix("/") else { violated("a URL is normalized wrongly", bytes) }
        guard (try? WireValidation.serviceURL(url, field: "participant", limits: .default)) == url else {
            violated("a normalized URL is refused or changes again", bytes)
        }
    } catch {
        checkErrorBody(error, bytes)
    }
}

/// The input as a query string (`name=value&…`, decoded): a query that parses prints back to one
/// that parses to the same query.
func checkListQuery(_ text: String, _ bytes: [UInt8]) {
    let parameters = text.split(separator: "&", omittingEmptySubsequences: false).map { item in
        let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        return (name: PercentEncoding.decoded(parts[0]) ?? String(parts[0]),
                value: parts.count > 1 ? PercentEncoding.decoded(parts[1]) ?? String(parts[1]) : "")
    }
    let query: ListQuery
    do {
        query = try ListQuery(parameters: parameters, limits: .default)
    } catch {
        checkErrorBody(error, bytes)
        return
    }
    if let after = query.after, !ListQuery.isCursor(after) { violated("a listing took an `after` that is not a cursor", bytes) }
    let printed = query.queryString.split(separator: "&").map { item in
        let parts = item.split(separator: "=", maxSplits: 1)
        return (name: String(parts[0]), value: String(parts[1]))
    }
    guard (try? ListQuery(parameters: printed, limits: .default)) == query else { violated("a listing query does not print back", bytes) }
}
