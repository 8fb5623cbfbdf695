import ArbiterCore
@testable import ArbiterHTTP
import Foundation
import HTTPTypes
import Testing
import Yams

/// `schemas/openapi.yaml`, loaded once.
struct OpenAPIDocument: @unchecked Sendable {
    // Yams gives plain Foundation values; the document is read-only after loading.
    let root: [String: Any]

    static let shared: OpenAPIDocument = {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("schemas/openapi.yaml")
        let text = try! String(contentsOf: url, encoding: .utf8)
        return OpenAPIDocument(root: try! Yams.load(yaml: text) as! [String: Any])
    }()

    var paths: [String: Any] { root["paths"] as! [String: Any] }
    var schemas: [String: Any] { (root["components"] as! [String: Any])["schemas"] as! [String: Any] }

    func schema(_ name: String) -> [String: Any] {
        guard let schema = schemas[name] as? [String: Any] else { fatalError("no schema \(name) in openapi.yaml") }
        return schema
    }

    func operation(_ endpoint: WireEndpoint) -> [String: Any]? {
        (paths[endpoint.path] as? [String: Any])?[endpoint.method.rawValue.lowercased()] as? [String: Any]
    }

    /// Follows `$ref`s within the document (`#/components/...`).
    func resolve(_ schema: [String: Any]) -> [String: Any] {
        guard let ref = schema["$ref"] as? String else { return schema }
        precondition(ref.hasPrefix("#/"), "only local references are supported: \(ref)")
        var node: Any = root
        for part in ref.dropFirst(2).split(separator: "/") {
            node = (node as! [String: Any])[String(part)]!
        }
        var target = resolve(node as! [String: Any])
        // OpenAPI 3.1 allows keywords beside $ref; they apply too.
        for (key, value) in schema where key != "$ref" && key != "description" && key != "example" {
            target[key] = value
        }
        return target
    }

    /// The schema of an operation's JSON request body.
    func requestSchema(_ endpoint: WireEndpoint) -> [String: Any]? {
        let body = operation(endpoint)?["requestBody"] as? [String: Any]
        let content = body?["content"] as? [String: Any]
        return (content?["application/json"] as? [String: Any])?["schema"] as? [String: Any]
    }

    /// The schema of an operation's JSON response for `status`.
    func responseSchema(_ endpoint: WireEndpoint, status: String) -> [String: Any]? {
        guard var response = (operation(endpoint)?["responses"] as? [String: Any])?[status] as? [String: Any] else { return nil }
        response = resolve(response)
        let content = response["content"] as? [String: Any]
        // A streamed answer's schema is that of one line.
        let media = content?["application/json"] ?? content?["application/x-ndjson"]
        return (media as? [String: Any])?["schema"] as? [String: Any]
    }
}

/// A small JSON Schema validator: `$ref`, `type`, `enum`, `const`, `required`, `properties`,
/// `items`, `allOf`, `oneOf`, string length and `pattern`, numeric bounds, item counts.
///
/// It is stricter than JSON Schema in one way, on purpose: an object member that no schema
/// declares is an error, so that the DTOs cannot send a field the contract does not document.
struct SchemaValidator {
    let document: OpenAPIDocument

    func errors(_ bytes: [UInt8], against schema: [String: Any]) -> [String] {
        do {
            let node = try JSONParser.parse(bytes)
            var errors: [String] = []
            validate(node, bytes, schema, path: "$", allowed: [], errors: &errors)
            return errors
        } catch {
            return ["not JSON: \(error)"]
        }
    }

    func declaredProperties(_ raw: [String: Any]) -> Set<String> {
        let schema = document.resolve(raw)
        var names = Set((schema["properties"] as? [String: Any])?.keys.map { $0 } ?? [])
        for key in ["allOf", "oneOf", "anyOf"] {
            for member in schema[key] as? [[String: Any]] ?? [] {
                names.formUnion(declaredProperties(member))
            }
        }
        return names
    }

    func validate(_ node: JSONNode, _ bytes: [UInt8], _ raw: [String: Any], path: String, allowed: Set<String>, errors: inout [String]) {
        let schema = document.resolve(raw)
        if let members = schema["allOf"] as? [[String: Any]] {
            let union = allowed.union(declaredProperties(schema))
            for member in members {
                validate(node, bytes, member, path: path, allowed: union, errors: &errors)
            }
        }
        if let members = schema["oneOf"] as? [[String: Any]] {
            let union = allowed.union(schema["properties"] != nil ? Set((schema["properties"] as! [String: Any]).keys) : [])
            let matching = members.filter { member in
                var memberErrors: [String] = []
                validate(node, bytes, member, path: path, allowed: union, errors: &memberErrors)
                return memberErrors.isEmpty
            }
            if matching.count != 1 {
                errors.append("\(path): matches \(matching.count) of the oneOf alternatives, not exactly 1")
            }
        }
        if let types = schema["type"] {
            let list = (types as? [String]) ?? [types as! String]
            if !list.contains(where: { matches(node, bytes, type: $0) }) {
                errors.append("\(path): \(node.typeName) is not of type \(list)")
                return
            }
        }
        if let allowedValues = schema["enum"] as? [Any] {
            if !allowedValues.contains(where: { equals(node, bytes, $0) }) {
                errors.append("\(path): \(String(decoding: bytes[node.range], as: UTF8.self)) is not in \(allowedValues)")
            }
        }
        if let constant = schema["const"], !equals(node, bytes, constant) {
            errors.append("\(path): is not \(constant)")
        }
        switch node.kind {
        case .string(let text):
            if let minimum = schema["minLength"] as? Int, text.count < minimum { errors.append("\(path): shorter than \(minimum)") }
            if let maximum = schema["maxLength"] as? Int, text.count > maximum { errors.append("\(path): longer than \(maximum)") }
            if let pattern = schema["pattern"] as? String {
                let regex = try! Regex(pattern)
                if (try? regex.firstMatch(in: text)) == nil { errors.append("\(path): \"\(text)\" does not match \(pattern)") }
            }
        case .number:
            let value = Double(String(decoding: bytes[node.range], as: UTF8.self))!
            if let minimum = schema["minimum"] as? Int, value < Double(minimum) { errors.append("\(path): below \(minimum)") }
            if let maximum = schema["maximum"] as? Int, value > Double(maximum) { errors.append("\(path): above \(maximum)") }
        case .array(let elements):
            if let minimum = schema["minItems"] as? Int, elements.count < minimum { errors.append("\(path): fewer than \(minimum) items") }
            if let maximum = schema["maxItems"] as? Int, elements.count > maximum { errors.append("\(path): more than \(maximum) items") }
            if let items = schema["items"] as? [String: Any] {
                for (index, element) in elements.enumerated() {
                    validate(element, bytes, items, path: "\(path)[\(index)]", allowed: [], errors: &errors)
                }
            }
        case .object(let members):
            let keys = Set(members.map(\.key))
            for name in schema["required"] as? [String] ?? [] where !keys.contains(name) {
                errors.append("\(path): missing required member \(name)")
            }
            if let properties = schema["properties"] as? [String: Any] {
                for member in members {
                    if let property = properties[member.key] as? [String: Any] {
                        validate(member.value, bytes, property, path: "\(path).\(member.key)", allowed: [], errors: &errors)
                    } else if !allowed.contains(member.key) {
                        errors.append("\(path): member \(member.key) is not declared")
                    }
                }
            }
        case .null, .bool:
            break
        }
    }

    func matches(_ node: JSONNode, _ bytes: [UInt8], type: String) -> Bool {
        switch (type, node.kind) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object), ("number", .number):
            return true
        case ("integer", .number):
            return !bytes[node.range].contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") })
        default:
            return false
        }
    }

    func equals(_ node: JSONNode, _ bytes: [UInt8], _ value: Any) -> Bool {
        switch node.kind {
        case .string(let text): return (value as? String) == text
        case .bool(let flag): return (value as? Bool) == flag
        case .number: return (value as? Int).map(String.init) == String(decoding: bytes[node.range], as: UTF8.self)
        case .null: return value is NSNull
        default: return false
        }
    }
}

/// Converts a value Yams loaded (an example in the document) to JSON text.
func jsonText(_ value: Any) -> String {
    var out: [UInt8] = []
    func write(_ value: Any) {
        switch value {
        case let text as String: JSONText.writeString(text, to: &out)
        case let flag as Bool: out.append(contentsOf: (flag ? "true" : "false").utf8)
        case let number as Int: out.append(contentsOf: String(number).utf8)
        case let number as Double: out.append(contentsOf: number.description.utf8)
        case let array as [Any]:
            out.append(UInt8(ascii: "["))
            for (index, element) in array.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                write(element)
            }
            out.append(UInt8(ascii: "]"))
        case let object as [String: Any]:
            out.append(UInt8(ascii: "{"))
            for (index, key) in object.keys.sorted().enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONText.writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                write(object[key]!)
            }
            out.append(UInt8(ascii: "}"))
        default:
            out.append(contentsOf: "null".utf8)
        }
    }
    write(value)
    return String(decoding: out, as: UTF8.self)
}

/// A sample body and the schema it must satisfy.
struct ContractSample: Sendable, CustomTestStringConvertible {
    var name: String
    var endpoint: WireEndpoint
    /// `nil` for the request body, or a response status.
    var status: String?
    var json: [UInt8]

    var testDescription: String { "\(name) (\(endpoint) \(status ?? "request"))" }

    init(_ name: String, _ endpoint: WireEndpoint, _ status: String?, _ value: some Encodable) {
        self.name = name
        self.endpoint = endpoint
        self.status = status
        self.json = try! WireJSON.encode(value)
    }
}

@Suite("Contract: schemas/openapi.yaml agrees with the DTOs and endpoints")
struct ContractTests {
    let document = OpenAPIDocument.shared

    static let payload = try! RawJSON(validating: #"{"op":"debit","account":"alice","amount":100}"#)
    static let view = TransactionView(
        id: "transfer-42",
        state: .committed,
        outcome: .committed,
        reason: nil,
        branches: [
            BranchView(participant: "http://bank-a:9001", payload: payload, vote: .yes, acknowledgement: .committed),
            BranchView(participant: "http://bank-b:9001", payload: try! RawJSON(validating: "[1]"), vote: .no, voteReason: "locked", acknowledgement: .unknown),
            BranchView(participant: "https://bank-c", payload: try! RawJSON(validating: "null"), vote: .readOnly),
            BranchView(participant: "https://bank-d", payload: try! RawJSON(validating: "\"x\"")),
        ],
        createdAt: WireTimestamp.string(millisecondsSinceEpoch: 1_735_787_045_678),
        decidedAt: WireTimestamp.string(millisecondsSinceEpoch: 1_735_787_045_700),
        endedAt: WireTimestamp.string(millisecondsSinceEpoch: 1_735_787_045_800)
    )

    static let samples: [ContractSample] = {
        var samples: [ContractSample] = [
            ContractSample("full submit", .submit, nil, SubmitRequest(id: "transfer-42", branches: [BranchBody(participant: "http://bank-a:9001", payload: payload)], timeoutMs: 2000, wait: .completion)),
            ContractSample("minimal submit", .submit, nil, SubmitRequest(branches: [BranchBody(participant: "https://b", payload: try! RawJSON(validating: "7"))])),
            ContractSample("committed", .submit, "200", SubmitResponse(id: "t", outcome: .committed)),
            ContractSample("transaction batch", .submitBatch, nil, SubmitBatchRequest(transactions: [
                SubmitRequest(id: "transfer-42", branches: [BranchBody(participant: "http://bank-a:9001", payload: payload)], timeoutMs: 2000, wait: .completion),
                SubmitRequest(branches: [BranchBody(participant: "https://b", payload: try! RawJSON(validating: "7"))]),
            ])),
            ContractSample("batch line committed", .submitBatch, "200", SubmitBatchResult(index: 0, id: "t", outcome: .committed)),
            ContractSample("batch line aborted", .submitBatch, "200", SubmitBatchResult(index: 3, id: "t", outcome: .aborted, reason: "voted no")),
            ContractSample("batch line error", .submitBatch, "200", SubmitBatchResult(index: 1, id: try! TxID("t"), error: .idInUse("t"))),
            ContractSample("aborted with reason", .submit, "200", SubmitResponse(id: "t", outcome: .aborted, reason: "bank-a voted no: insufficient funds")),
            ContractSample("transaction", .transaction, "200", view),
            ContractSample("preparing transaction", .transaction, "200", TransactionView(id: "t", state: .preparing, branches: [], createdAt: "2025-01-02T03:04:05.678Z")),
            ContractSample("page", .list, "200", TransactionPage(transactions: [view], next: "1042")),
            ContractSample("last page", .list, "200", TransactionPage(transactions: [])),
            ContractSample("health", .coordinatorHealth, "200", HealthResponse()),
            ContractSample("participant health", .participantHealth, "200", HealthResponse()),
            ContractSample("prepare", .prepare, nil, PrepareBody(txid: "t", coordinator: "http://c:8080", payload: payload)),
            ContractSample("one-phase prepare", .prepare, nil, PrepareBody(txid: "t", coordinator: "http://c:8080", payload: payload, onePhase: true)),
            ContractSample("vote yes", .prepare, "200", PrepareReply.vote(txid: "t", vote: .yes, reason: nil)),
            ContractSample("vote no", .prepare, "200", PrepareReply.vote(txid: "t", vote: .no, reason: "locked")),
            ContractSample("vote read-only", .prepare, "200", PrepareReply.vote(txid: "t", vote: .readOnly, reason: nil)),
            ContractSample("one-phase outcome", .prepare, "200", PrepareReply.outcome(txid: "t", outcome: .aborted)),
            ContractSample("commit", .commit, nil, DecisionBody(txid: "t")),
            ContractSample("abort", .abort, nil, DecisionBody(txid: "t")),
            ContractSample("batch", .batch, nil, BatchRequest(messages: [
                .prepare(PrepareBody(txid: "a", coordinator: "http://c", payload: payload, onePhase: true)),
                .commit(DecisionBody(txid: "b")),
                .abort(DecisionBody(txid: "c")),
            ])),
            ContractSample("batch replies", .batch, "200", BatchResponse(replies: [
                .prepare(.vote(txid: "a", vote: .no, reason: "locked")),
                .prepare(.outcome(txid: "a2", outcome: .committed)),
                .commit(AcknowledgeReply(txid: "b", state: .committed)),
                .abort(AcknowledgeReply(txid: "c", state: .aborted)),
                .error(txid: "d", ErrorDetail(APIError.internal())),
            ])),
        ]
        for answer in WireInquiryAnswer.allCases {
            samples.append(ContractSample("outcome \(answer.rawValue)", .outcome, "200", OutcomeResponse(id: "t", outcome: answer)))
        }
        for state in WireLocalOutcome.allCases {
            samples.append(ContractSample("ack \(state.rawValue)", .commit, "200", AcknowledgeReply(txid: "t", state: state)))
            samples.append(ContractSample("ack \(state.rawValue)", .abort, "200", AcknowledgeReply(txid: "t", state: state)))
        }
        let errors: [(WireEndpoint, String, APIError)] = [
            (.submit, "400", .missingField("branches[0].payload")),
            (.submit, "401", .unauthorized()),
            (.submit, "409", .idInUse("t")),
            (.submit, "413", .bodyTooLarge(limit: 1 << 20)),
            (.submit, "415", APIError(status: .unsupportedMediaType, code: .unsupportedMediaType, message: "send JSON")),
            (.commit, "415", APIError(status: .unsupportedMediaType, code: .unsupportedMediaType, message: "send JSON")),
            (.submit, "500", .internal()),
            (.submit, "503", .unavailable("stopping")),
            (.submit, "504", .outcomeUnknown("t")),
            (.submitBatch, "400", .missingField("transactions[1].branches[0].payload")),
            (.submitBatch, "401", .unauthorized()),
            (.submitBatch, "413", .bodyTooLarge(limit: 16 << 20)),
            (.transaction, "404", .notFound("no transaction t", field: "id")),
            (.list, "400", .invalidValue("limit", "bad")),
            (.prepare, "400", .invalidValue("coordinator", "bad")),
            (.batch, "413", .bodyTooLarge(limit: 16 << 20)),
        ]
        for (endpoint, status, error) in errors {
            samples.append(ContractSample("error \(error.code)", endpoint, status, ErrorResponse(error)))
        }
        return samples
    }()

    @Test("encoded DTOs satisfy the documented schemas", arguments: samples)
    func samplesValidate(_ sample: ContractSample) throws {
        let schema = sample.status.map { document.responseSchema(sample.endpoint, status: $0) } ?? document.requestSchema(sample.endpoint)
        let found = try #require(schema, "openapi.yaml documents no JSON schema for \(sample.testDescription)")
        let errors = SchemaValidator(document: document).errors(sample.json, against: found)
        #expect(errors.isEmpty, "\(String(decoding: sample.json, as: UTF8.self)): \(errors)")
    }

    @Test("the validator catches what it must")
    func validatorCatches() {
        let validator = SchemaValidator(document: document)
        let bad: [(String, String)] = [
            (#"{"txid":"t","vote":"maybe"}"#, "PrepareReply"),
            (#"{"txid":"t","vote":"yes","outcome":"committed"}"#, "PrepareReply"),
            (#"{"txid":"bad id","state":"committed"}"#, "AcknowledgeReply"),
            (#"{"txid":"t","state":"committed","extra":1}"#, "AcknowledgeReply"),
            (#"{"branches":[]}"#, "SubmitRequest"),
            (#"{"branches":[{"participant":"","payload":1}]}"#, "SubmitRequest"),
            (#"{"branches":[{"participant":"http://x","payload":1}],"timeoutMs":1.5}"#, "SubmitRequest"),
            (#"{"messages":[{"type":"vote","txid":"t"}]}"#, "BatchRequest"),
            (#"{"error":{"code":"teapot","message":"x"}}"#, "ErrorResponse"),
        ]
        for (json, name) in bad {
            #expect(!validator.errors(json.bytes, against: document.schema(name)).isEmpty, "\(json) should not satisfy \(name)")
        }
    }

    @Test("the documented paths and methods are exactly the endpoints the helpers serve")
    func endpointsMatch() {
        var documented = Set<String>()
        for (path, item) in document.paths {
            for method in (item as! [String: Any]).keys where ["get", "post", "put", "delete", "patch"].contains(method) {
                documented.insert("\(method.uppercased()) \(path)")
            }
        }
        let served = Set(WireEndpoint.all.map(\.description))
        #expect(documented == served)
        #expect(WireEndpoint.transaction.routerPath == "/v1/transactions/:id")
        #expect(WireEndpoint.outcome.routerPath == "/v1/transactions/:id/outcome")
    }

    @Test("each endpoint's documented security matches its access", arguments: WireEndpoint.all)
    func security(_ endpoint: WireEndpoint) throws {
        let operation = try #require(document.operation(endpoint))
        let schemes: Set<String>
        if let security = operation["security"] as? [[String: Any]] {
            schemes = Set(security.flatMap(\.keys))
        } else {
            let global = document.root["security"] as! [[String: Any]]
            schemes = Set(global.flatMap(\.keys))
        }
        switch endpoint.access {
        case .open: #expect(schemes.isEmpty)
        case .clientToken: #expect(schemes == ["clientToken"])
        case .protocolToken: #expect(schemes == ["protocolToken"])
        case .operatorToken: #expect(schemes == ["operatorToken"])
        case .clientOrOperatorToken: #expect(schemes == ["clientToken", "operatorToken"])
        }
        let tags = operation["tags"] as? [String] ?? []
        #expect(tags.contains(endpoint.service.rawValue))
        if endpoint.access != .open {
            let responses = operation["responses"] as! [String: Any]
            #expect(responses["401"] != nil, "\(endpoint) must document 401")
            #expect(responses["403"] != nil, "\(endpoint) must document 403 (a token of another role)")
        }
    }

    @Test("documented enumerations match the wire enums")
    func enumerations() {
        func values(_ name: String) -> [String] { document.schema(name)["enum"] as! [String] }
        #expect(values("WaitMode") == WaitMode.allCases.map(\.rawValue))
        #expect(values("Outcome") == WireOutcome.allCases.map(\.rawValue))
        #expect(values("Vote") == WireVote.allCases.map(\.rawValue))
        #expect(values("InquiryAnswer") == WireInquiryAnswer.allCases.map(\.rawValue))
        #expect(values("LocalOutcome") == WireLocalOutcome.allCases.map(\.rawValue))
        #expect(values("TransactionState") == TransactionState.allCases.map(\.rawValue))
        let codes = (document.schema("ErrorDetail")["properties"] as! [String: Any])["code"] as! [String: Any]
        #expect(codes["enum"] as! [String] == APIError.Code.all.map(\.rawValue))
    }

    @Test("documented limits are the default limits")
    func limits() {
        let limits = WireLimits.default
        let txid = document.schema("TxID")
        #expect(txid["maxLength"] as? Int == TxID.lengthMax)
        let submit = document.schema("SubmitRequest")["properties"] as! [String: Any]
        #expect((submit["branches"] as! [String: Any])["maxItems"] as? Int == limits.branchCountMax)
        #expect((submit["timeoutMs"] as! [String: Any])["maximum"] as? Int == limits.timeoutMsMax)
        let transactionBatch = document.schema("SubmitBatchRequest")["properties"] as! [String: Any]
        #expect((transactionBatch["transactions"] as! [String: Any])["maxItems"] as? Int == limits.batchMessageCountMax)
        let batch = document.schema("BatchRequest")["properties"] as! [String: Any]
        #expect((batch["messages"] as! [String: Any])["maxItems"] as? Int == limits.batchMessageCountMax)
        #expect(document.schema("ServiceURL")["maxLength"] as? Int == limits.urlLengthMax)
        let listing = document.operation(.list)!["parameters"] as! [[String: Any]]
        let limit = listing.first { $0["name"] as? String == "limit" }!["schema"] as! [String: Any]
        #expect(limit["maximum"] as? Int == limits.listLimitMax)
        #expect(limit["default"] as? Int == limits.listLimitDefault)
        let description = (document.root["info"] as! [String: Any])["description"] as! String
        #expect(description.contains("\(limits.bodySizeMax) bytes"))
        #expect(description.contains("\(limits.batchBodySizeMax) bytes"))
        #expect(description.contains("\(limits.payloadSizeMax) bytes"))
    }

    @Test("the document's request examples decode into the DTOs and satisfy their schemas")
    func requestExamples() throws {
        let decoders: [WireEndpoint: @Sendable ([UInt8]) throws -> Void] = [
            .submit: { _ = try WireJSON.decode(SubmitRequest.self, from: $0).validated(limits: .default) },
            .submitBatch: { _ = try WireJSON.decode(SubmitBatchRequest.self, from: $0).validated(limits: .default) },
            .prepare: { _ = try WireJSON.decode(PrepareBody.self, from: $0).validated(limits: .default) },
            .batch: { _ = try WireJSON.decode(BatchRequest.self, from: $0).validated(limits: .default) },
        ]
        for (endpoint, decode) in decoders {
            let body = try #require(document.operation(endpoint)?["requestBody"] as? [String: Any])
            let media = (body["content"] as! [String: Any])["application/json"] as! [String: Any]
            let example = try #require(media["example"], "\(endpoint) has no request example")
            let json = jsonText(example)
            try decode(json.bytes)
            #expect(SchemaValidator(document: document).errors(json.bytes, against: media["schema"] as! [String: Any]).isEmpty, "\(json)")
        }
    }

    @Test("the document's response examples decode into the DTOs and satisfy their schemas")
    func responseExamples() throws {
        let decoders: [WireEndpoint: @Sendable ([UInt8]) throws -> Void] = [
            .submit: { _ = try WireJSON.decode(SubmitResponse.self, from: $0) },
            .submitBatch: { _ = try WireJSON.decode(SubmitBatchResult.self, from: $0) },
            .outcome: { _ = try WireJSON.decode(OutcomeResponse.self, from: $0).message() },
            .prepare: { _ = try WireJSON.decode(PrepareReply.self, from: $0).message() },
            .commit: { _ = try WireJSON.decode(AcknowledgeReply.self, from: $0).message() },
            .abort: { _ = try WireJSON.decode(AcknowledgeReply.self, from: $0).message() },
            .batch: { _ = try WireJSON.decode(BatchResponse.self, from: $0) },
        ]
        for (endpoint, decode) in decoders {
            let responses = document.operation(endpoint)!["responses"] as! [String: Any]
            let content = (responses["200"] as! [String: Any])["content"] as! [String: Any]
            let media = (content["application/json"] ?? content["application/x-ndjson"]) as! [String: Any]
            var examples: [Any] = []
            if let example = media["example"] { examples.append(example) }
            for (_, named) in media["examples"] as? [String: Any] ?? [:] {
                examples.append((named as! [String: Any])["value"]!)
            }
            #expect(!examples.isEmpty, "\(endpoint) has no response example")
            for example in examples {
                let json = jsonText(example)
                try decode(json.bytes)
                #expect(SchemaValidator(document: document).errors(json.bytes, against: media["schema"] as! [String: Any]).isEmpty, "\(json)")
            }
        }
    }
}
