import ArbiterCore
import ArbiterHTTP
import AsyncHTTPClient
import Foundation
import Testing

/// Bad input gets a 4xx JSON error naming the field, nothing is written, and the service goes on;
/// a request without valid credentials gets 401 and changes nothing.
@Suite("Coordinator input and auth")
struct CoordinatorInputTests {
    struct BadRequest: Sendable, CustomTestStringConvertible {
        var name: String
        var body: String
        var status: Int
        var code: String
        var field: String?
        var testDescription: String { name }
    }

    static let participant = "http://127.0.0.1:9"
    static let cases: [BadRequest] = [
        BadRequest(name: "malformed JSON", body: #"{"branches": [}"#, status: 400, code: "invalid_json", field: nil),
        BadRequest(name: "missing branches", body: #"{"id": "x"}"#, status: 400, code: "missing_field", field: "branches"),
        BadRequest(name: "wrong type", body: #"{"branches": "many"}"#, status: 400, code: "wrong_type", field: "branches"),
        BadRequest(name: "invalid id", body: #"{"id": "no spaces", "branches": [{"participant": "\#(participant)", "payload": 1}]}"#,
                   status: 400, code: "invalid_value", field: "id"),
        BadRequest(name: "id too long", body: #"{"id": "\#(String(repeating: "x", count: 129))", "branches": [{"participant": "\#(participant)", "payload": 1}]}"#,
                   status: 400, code: "limit_exceeded", field: "id"),
        BadRequest(name: "zero branches", body: #"{"branches": []}"#, status: 400, code: "invalid_value", field: "branches"),
        BadRequest(name: "too many branches", body: #"{"branches": [\#((0..<65).map { #"{"participant": "http://127.0.0.1:\#(1000 + $0)", "payload": 1}"# }.joined(separator: ","))]}"#,
                   status: 400, code: "limit_exceeded", field: "branches"),
        BadRequest(name: "participant URL not http(s)", body: #"{"branches": [{"participant": "ftp://bank", "payload": 1}]}"#,
                   status: 400, code: "invalid_value", field: "branches[0].participant"),
        BadRequest(name: "duplicate participant", body: #"{"branches": [{"participant": "\#(participant)", "payload": 1}, {"participant": "\#(participant)", "payload": 2}]}"#,
                   status: 400, code: "duplicate_participant", field: "branches[1].participant"),
        BadRequest(name: "negative timeout", body: #"{"timeoutMs": -5, "branches": [{"participant": "\#(participant)", "payload": 1}]}"#,
                   status: 400, code: "invalid_value", field: "timeoutMs"),
        BadRequest(name: "body over the size limit", body: #"{"branches": [{"participant": "\#(participant)", "payload": "\#(String(repeating: "x", count: 1 << 20))"}]}"#,
                   status: 413, code: "body_too_large", field: nil),
    ]

    @Test(arguments: cases)
    func badInputIsRefusedAndNothingIsWritten(_ bad: BadRequest) async throws {
        let directory = try TemporaryDirectory()
        try await withCoordinator(data: directory.path) { url, client, http async throws in
            let response = try await rawRequest(http, .POST, url + "/v1/transactions", body: bad.body)
            #expect(response.status == bad.status, "\(response.body)")
            let error = try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any]
            let detail = error?["error"] as? [String: Any]
            #expect(detail?["code"] as? String == bad.code, "\(response.body)")
            #expect(detail?["field"] as? String == bad.field, "\(response.body)")
            #expect((detail?["message"] as? String)?.isEmpty == false)
            #expect(try await client.list().transactions.isEmpty, "nothing was written")
            #expect(try await rawRequest(http, .GET, url + "/healthz", token: nil).status == 200, "still serving")
        }
    }

    @Test func requestsWithoutValidCredentialsGet401AndChangeNothing() async throws {
        let directory = try TemporaryDirectory()
        try await withCoordinator(data: directory.path) { url, client, http async throws in
            let body = #"{"id": "auth-1", "branches": [{"participant": "\#(Self.participant)", "payload": 1}]}"#
            #expect(try await rawRequest(http, .POST, url + "/v1/transactions", body: body, token: nil).status == 401)
            #expect(try await rawRequest(http, .POST, url + "/v1/transactions", body: body, token: try BearerSecret("wrong")).status == 401)
            #expect(try await rawRequest(http, .GET, url + "/v1/transactions/auth-1/outcome", token: nil).status == 401)
            // The listing takes the operator token: the protocol secret is a known token of another role.
            #expect(try await rawRequest(http, .GET, url + "/v1/transactions").status == 403)
            #expect(try await client.list().transactions.isEmpty, "nothing was written")
        }
    }

    @Test func withoutAnOperatorTokenTheListingIsOffAndTheRestServes() async throws {
        let directory = try TemporaryDirectory()
        try await withCoordinator(data: directory.path, operatorSecret: nil) { url, _, http async throws in
            let listing = try await rawRequest(http, .GET, url + "/v1/transactions", token: TestSecrets.operatorSecret)
            #expect(listing.status == 403)
            #expect(listing.body.contains("--operator-secret-file"))
            #expect(try await rawRequest(http, .GET, url + "/healthz", token: nil).status == 200)
        }
    }
}
