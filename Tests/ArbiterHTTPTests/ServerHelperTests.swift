import ArbiterCore
@testable import ArbiterHTTP
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// One bad request and what the API must answer.
struct BadInput: Sendable, CustomTestStringConvertible {
    var name: String
    var path: String = "/v1/transactions"
    var body: String
    var status: HTTPResponse.Status = .badRequest
    var code: APIError.Code
    var field: String?

    var testDescription: String { name }
}

/// A router with the shared helpers and minimal coordinator and participant handlers.
func makeTestRouter(handled: Counter, limits: WireLimits = .default) -> Router<BasicRequestContext> {
    let router = Router()
    router.add(middleware: APIErrorMiddleware())
    router.get("/healthz") { _, _ in HealthResponse() }
    router.get("/boom") { _, _ -> HealthResponse in throw CancellationError() }

    let operatorOnly = router.group("/v1/transactions").add(middleware: BearerTokenMiddleware(secret: TestSecrets.operatorSecret))
    operatorOnly.get { request, context in
        handled.increment()
        let query = try request.listQuery(limits: limits)
        return TransactionPage(transactions: [], next: query.after)
    }

    let protected = router.group("/v1").add(middleware: BearerTokenMiddleware(secret: TestSecrets.protocolSecret))
    protected.post("/transactions") { request, context in
        handled.increment()
        let body = try await request.decodeWire(SubmitRequest.self, bodySizeMax: limits.bodySizeMax)
        let submission = try body.validated(limits: limits)
        return SubmitResponse(id: submission.id ?? txid("generated"), outcome: .committed, reason: nil)
    }
    protected.get("/transactions/:id/outcome") { request, context in
        handled.increment()
        let id = try request.txid(context: context)
        return OutcomeResponse(id: id, answer: .aborted)
    }
    protected.post("/batch") { request, context in
        handled.increment()
        let body = try await request.decodeWire(BatchRequest.self, bodySizeMax: limits.batchBodySizeMax)
        let messages = try body.validated(limits: limits)
        return BatchResponse(replies: messages.map { message in
            switch message {
            case .prepare(let request): return BatchReply(answering: message, with: .vote(request.txid, .yes))
            default: return BatchReply(answering: message, with: .acknowledge(message.txid, .committed))
            }
        })
    }
    return router
}

let authorized: HTTPFields = [.authorization: TestSecrets.protocolSecret.authorizationHeaderValue, .contentType: "application/json"]

func branches(_ count: Int, payload: String = "1") -> String {
    "[" + (0..<count).map { #"{"participant":"http://p\#($0):9000","payload":\#(payload)}"# }.joined(separator: ",") + "]"
}

@Suite("Server helpers: decoding errors, auth, error rendering")
struct ServerHelperTests {
    static let badInputs: [BadInput] = [
        BadInput(name: "malformed JSON", body: #"{"branches": ["#, code: .invalidJSON),
        BadInput(name: "trailing comma", body: #"{"branches": [],}"#, code: .invalidJSON),
        BadInput(name: "duplicate member", body: #"{"branches": [], "branches": []}"#, code: .invalidJSON),
        BadInput(name: "empty body", body: "", code: .invalidJSON),
        BadInput(name: "not an object", body: "[1]", code: .wrongType),
        BadInput(name: "missing branches", body: "{}", code: .missingField, field: "branches"),
        BadInput(name: "branches not an array", body: #"{"branches": "x"}"#, code: .wrongType, field: "branches"),
        BadInput(name: "participant not a string", body: #"{"branches": [{"participant": 5, "payload": 1}]}"#, code: .wrongType, field: "branches[0].participant"),
        BadInput(name: "participant null", body: #"{"branches": [{"participant": null, "payload": 1}]}"#, code: .wrongType, field: "branches[0].participant"),
        BadInput(name: "missing payload", body: #"{"branches": [{"participant": "http://p"}]}"#, code: .missingField, field: "branches[0].payload"),
        BadInput(name: "id with a space", body: #"{"id": "bad id", "branches": \#(branches(1))}"#, code: .invalidValue, field: "id"),
        BadInput(name: "empty id", body: #"{"id": "", "branches": \#(branches(1))}"#, code: .invalidValue, field: "id"),
        BadInput(name: "id over 128 characters", body: #"{"id": "\#(String(repeating: "x", count: 129))", "branches": \#(branches(1))}"#, code: .limitExceeded, field: "id"),
        BadInput(name: "id not a string", body: #"{"id": 7, "branches": \#(branches(1))}"#, code: .wrongType, field: "id"),
        BadInput(name: "zero branches", body: #"{"branches": []}"#, code: .invalidValue, field: "branches"),
        BadInput(name: "65 branches", body: #"{"branches": \#(branches(65))}"#, code: .limitExceeded, field: "branches"),
        BadInput(
            name: "duplicate participant",
            body: #"{"branches": [{"participant": "http://p:1", "payload": 1}, {"participant": "http://p:1/", "payload": 2}]}"#,
            code: .duplicateParticipant, field: "branches[1].participant"
        ),
        BadInput(
            name: "participant not http(s)",
            body: #"{"branches": [{"participant": "http://a", "payload": 1}, {"participant": "http://b", "payload": 1}, {"participant": "ftp://c", "payload": 1}]}"#,
            code: .invalidValue, field: "branches[2].participant"
        ),
        BadInput(name: "participant with credentials", body: #"{"branches": [{"participant": "http://u:p@a", "payload": 1}]}"#, code: .invalidValue, field: "branches[0].participant"),
        BadInput(
            name: "payload over 64 KiB",
            body: #"{"branches": [{"participant": "http://a", "payload": "\#(String(repeating: "x", count: 65_536))"}]}"#,
            code: .limitExceeded, field: "branches[0].payload"
        ),
        BadInput(name: "timeoutMs zero", body: #"{"branches": \#(branches(1)), "timeoutMs": 0}"#, code: .invalidValue, field: "timeoutMs"),
        BadInput(name: "timeoutMs fractional", body: #"{"branches": \#(branches(1)), "timeoutMs": 1.5}"#, code: .wrongType, field: "timeoutMs"),
        BadInput(name: "wait not allowed", body: #"{"branches": \#(branches(1)), "wait": "forever"}"#, code: .invalidValue, field: "wait"),
        BadInput(name: "deeply nested payload", body: #"{"branches": [{"participant": "http://a", "payload": \#(String(repeating: "[", count: 5000))}]}"#, code: .invalidJSON),
        BadInput(name: "body over 1 MiB", body: #"{"branches": [], "pad": "\#(String(repeating: " ", count: 1 << 20))"}"#, status: .contentTooLarge, code: .bodyTooLarge),
        BadInput(name: "batch without messages", path: "/v1/batch", body: #"{"messages": []}"#, code: .invalidValue, field: "messages"),
        BadInput(name: "batch message of unknown type", path: "/v1/batch", body: #"{"messages": [{"type": "commit", "txid": "a"}, {"type": "vote", "txid": "b"}]}"#, code: .invalidValue, field: "messages[1].type"),
        BadInput(name: "batch message without type", path: "/v1/batch", body: #"{"messages": [{"txid": "a"}]}"#, code: .missingField, field: "messages[0].type"),
        BadInput(name: "batch commit with a bad txid", path: "/v1/batch", body: #"{"messages": [{"type": "commit", "txid": "a/b"}]}"#, code: .invalidValue, field: "messages[0].txid"),
        BadInput(
            name: "batch prepare with a bad coordinator",
            path: "/v1/batch",
            body: #"{"messages": [{"type": "prepare", "txid": "a", "coordinator": "mailto:x", "payload": 1}]}"#,
            code: .invalidValue, field: "messages[0].coordinator"
        ),
    ]

    @Test("bad input gets the right status, code and field", arguments: badInputs)
    func badInput(_ input: BadInput) async throws {
        let handled = Counter()
        let app = Application(router: makeTestRouter(handled: handled), logger: testLogger("bad-input"))
        try await app.test(.router) { client in
            let response = try await client.execute(uri: input.path, method: .post, headers: authorized, body: ByteBuffer(string: input.body))
            #expect(response.status == input.status)
            #expect(response.headers[.contentType] == "application/json")
            let error = try WireJSON.decode(ErrorResponse.self, from: response.body).error
            #expect(error.code == input.code.rawValue)
            #expect(error.field == input.field)
            #expect(!error.message.isEmpty)
        }
    }

    @Test("limit messages name the limit")
    func limitMessages() async throws {
        let limits = WireLimits(bodySizeMax: 4096, branchCountMax: 2, payloadSizeMax: 8)
        let app = Application(router: makeTestRouter(handled: Counter(), limits: limits), logger: testLogger("limits"))
        try await app.test(.router) { client in
            let cases: [(String, String)] = [
                (#"{"branches": \#(branches(3))}"#, "the limit is 2"),
                (#"{"branches": \#(branches(1, payload: "\"123456789\""))}"#, "the limit is 8"),
                (#"{"branches": [], "pad": "\#(String(repeating: "x", count: 5000))"}"#, "limit of 4096 bytes"),
            ]
            for (body, phrase) in cases {
                let response = try await client.execute(uri: "/v1/transactions", method: .post, headers: authorized, body: ByteBuffer(string: body))
                let error = try WireJSON.decode(ErrorResponse.self, from: response.body).error
                #expect(error.message.contains(phrase), "\(error.message)")
            }
        }
    }

    @Test("a valid submit passes the helpers")
    func validSubmit() async throws {
        let handled = Counter()
        let app = Application(router: makeTestRouter(handled: handled), logger: testLogger("valid"))
        try await app.test(.router) { client in
            let body = #"{"id": "t-1", "branches": \#(branches(64)), "timeoutMs": 3600000, "wait": "completion"}"#
            let response = try await client.execute(uri: "/v1/transactions", method: .post, headers: authorized, body: ByteBuffer(string: body))
            #expect(response.status == .ok)
            #expect(try WireJSON.decode(SubmitResponse.self, from: response.body) == SubmitResponse(id: "t-1", outcome: .committed))
        }
        #expect(handled.count == 1)
    }

    @Test(
        "requests without a valid bearer token get 401 and run no handler",
        arguments: [nil, "", "Bearer", "Bearer ", "Bearer wrong", "Bearer protocol-s3cre", "Bearer protocol-s3cret2", "Basic cHJvdG9jb2w=", "protocol-s3cret", "Bearer operator-s3cret"]
    )
    func unauthorized(header: String?) async throws {
        let handled = Counter()
        let app = Application(router: makeTestRouter(handled: handled), logger: testLogger("auth"))
        try await app.test(.router) { client in
            var headers: HTTPFields = [.contentType: "application/json"]
            if let header { headers[.authorization] = header }
            for (path, method) in [("/v1/transactions", HTTPRequest.Method.post), ("/v1/batch", .post), ("/v1/transactions/t1/outcome", .get)] {
                let response = try await client.execute(uri: path, method: method, headers: headers, body: ByteBuffer(string: #"{"branches": \#(branches(1))}"#))
                #expect(response.status == .unauthorized)
                #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                let error = try WireJSON.decode(ErrorResponse.self, from: response.body).error
                #expect(error.code == "unauthorized")
                if let header, header.count > 7 {
                    #expect(!error.message.contains(header.dropFirst(7)), "the error must not echo the token")
                }
            }
        }
        #expect(handled.count == 0)
    }

    @Test("the scheme is case-insensitive and the operator route takes the operator token only")
    func tokens() async throws {
        let handled = Counter()
        let app = Application(router: makeTestRouter(handled: handled), logger: testLogger("tokens"))
        try await app.test(.router) { client in
            let lower = try await client.execute(uri: "/v1/transactions/t1/outcome", method: .get, headers: [.authorization: "bearer protocol-s3cret"])
            #expect(lower.status == .ok)
            #expect(try WireJSON.decode(OutcomeResponse.self, from: lower.body) == OutcomeResponse(id: "t1", outcome: .aborted))

            let asProtocol = try await client.execute(uri: "/v1/transactions?limit=5", method: .get, headers: authorized)
            #expect(asProtocol.status == .unauthorized)
            let asOperator = try await client.execute(
                uri: "/v1/transactions?limit=5&after=41",
                method: .get,
                headers: [.authorization: TestSecrets.operatorSecret.authorizationHeaderValue]
            )
            #expect(asOperator.status == .ok)
            #expect(try WireJSON.decode(TransactionPage.self, from: asOperator.body).next == "41")
            let badQuery = try await client.execute(
                uri: "/v1/transactions?limit=0",
                method: .get,
                headers: [.authorization: TestSecrets.operatorSecret.authorizationHeaderValue]
            )
            #expect(badQuery.status == .badRequest)
            #expect(try WireJSON.decode(ErrorResponse.self, from: badQuery.body).error.field == "limit")
        }
        #expect(handled.count == 3)
    }

    @Test("a bad transaction id in the path names the parameter")
    func badPathID() async throws {
        let app = Application(router: makeTestRouter(handled: Counter()), logger: testLogger("path"))
        try await app.test(.router) { client in
            let response = try await client.execute(uri: "/v1/transactions/bad%20id/outcome", method: .get, headers: authorized)
            #expect(response.status == .badRequest)
            let error = try WireJSON.decode(ErrorResponse.self, from: response.body).error
            #expect(error.code == "invalid_value")
            #expect(error.field == "id")
        }
    }

    @Test("unknown routes and unexpected errors are JSON errors too")
    func otherErrors() async throws {
        let app = Application(router: makeTestRouter(handled: Counter()), logger: testLogger("other"))
        try await app.test(.router) { client in
            let missing = try await client.execute(uri: "/nowhere", method: .get)
            #expect(missing.status == .notFound)
            #expect(try WireJSON.decode(ErrorResponse.self, from: missing.body).error.code == "not_found")

            let boom = try await client.execute(uri: "/boom", method: .get)
            #expect(boom.status == .internalServerError)
            let error = try WireJSON.decode(ErrorResponse.self, from: boom.body).error
            #expect(error.code == "internal")
            #expect(!error.message.contains("Cancellation"), "internals stay out of the message")

            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.status == .ok)
            #expect(String(buffer: health.body) == #"{"status":"ok"}"#)
        }
    }

    @Test("a batch is handled in order with one reply per message")
    func batch() async throws {
        let app = Application(router: makeTestRouter(handled: Counter()), logger: testLogger("batch"))
        try await app.test(.router) { client in
            let body = #"{"messages": [{"type": "prepare", "txid": "a", "coordinator": "http://c", "payload": {"k": [1]}}, {"type": "commit", "txid": "b"}, {"type": "abort", "txid": "c"}]}"#
            let response = try await client.execute(uri: "/v1/batch", method: .post, headers: authorized, body: ByteBuffer(string: body))
            #expect(response.status == .ok)
            #expect(
                String(buffer: response.body)
                    == #"{"replies":[{"type":"prepare","txid":"a","vote":"yes"},{"type":"commit","txid":"b","state":"committed"},{"type":"abort","txid":"c","state":"committed"}]}"#
            )
        }
    }
}

@Suite("Bearer secrets")
struct SecretTests {
    func temporaryFile(_ content: String?) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("arbiter-secret-\(UUID().uuidString)").path
        if let content {
            try content.write(toFile: path, atomically: true, encoding: .utf8)
        }
        return path
    }

    @Test("a secret file is read and trimmed")
    func readsFile() throws {
        let path = try temporaryFile("  s3cret-value\n\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let secret = try BearerSecret.read(fromFile: path)
        #expect(secret.authorizationHeaderValue == "Bearer s3cret-value")
        #expect(secret.matches("s3cret-value".utf8))
        #expect(!secret.matches("s3cret-valuf".utf8))
        #expect(!secret.matches("s3cret-value2".utf8))
        #expect(!secret.matches("".utf8))
        #expect("\(secret)" == "<redacted>")
        #expect(String(reflecting: secret) == "BearerSecret(<redacted>)")
    }

    @Test("a missing or empty file gives an error that names it")
    func badFiles() throws {
        let missing = try temporaryFile(nil)
        #expect {
            try BearerSecret.read(fromFile: missing)
        } throws: { error in
            guard let error = error as? SecretError else { return false }
            return error.reason == .missing && error.description.contains(missing)
        }
        let empty = try temporaryFile(" \n\t ")
        defer { try? FileManager.default.removeItem(atPath: empty) }
        #expect {
            try BearerSecret.read(fromFile: empty)
        } throws: { error in
            (error as? SecretError)?.reason == .empty
        }
        let spaced = try temporaryFile("two words")
        defer { try? FileManager.default.removeItem(atPath: spaced) }
        #expect {
            try BearerSecret.read(fromFile: spaced)
        } throws: { error in
            guard let error = error as? SecretError else { return false }
            return error.reason == .invalidCharacter && !error.description.contains("two")
        }
        #expect(throws: SecretError.self) { try BearerSecret("") }
    }
}
