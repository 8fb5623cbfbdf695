import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOHTTP1
import Testing

/// Where the coordinator's answers and `schemas/openapi.yaml` once disagreed (found by fuzzing the
/// running services from the contract): the listing's cursor, percent-encoded ids, methods a path
/// does not serve, and bodies that are not JSON.
@Suite("Coordinator over HTTP: the contract's form")
struct CoordinatorContractTests {
    @Test("the listing pages with the opaque cursor of `next`, and refuses a transaction id as `after`")
    func listingPagesWithTheCursor() async throws {
        let directory = try TemporaryDirectory()
        try await withParticipants([FakeParticipant()]) { ids in
            try await withCoordinator(data: directory.path) { url, client, http in
                for name in ["p-1", "p-2", "p-3"] {
                    _ = try await client.submit(branches: [branch(ids[0])], id: txid(name), wait: .completion)
                }
                let first = try await client.list(limit: 2)
                #expect(first.transactions.map(\.id) == ["p-1", "p-2"])
                let next = try #require(first.next)
                #expect(ListQuery.isCursor(next))
                let second = try await client.list(limit: 2, after: next)
                #expect(second.transactions.map(\.id) == ["p-3"])
                #expect(second.next == nil)

                for after in ["p-1", "transfer-42", "-1", "12345678901234567890"] {
                    let refused = try await call(http, .GET, "\(url)/v1/transactions?after=\(after)", token: TestSecrets.operatorSecret)
                    #expect(refused.status == 400, "after=\(after)")
                    let error = try WireJSON.decode(ErrorResponse.self, from: Array(refused.body.utf8)).error
                    #expect(error.code == "invalid_value" && error.field == "after")
                }
            }
        }
    }

    @Test("a percent-encoded id names the same transaction as the plain one")
    func percentEncodedIDs() async throws {
        let directory = try TemporaryDirectory()
        try await withParticipants([FakeParticipant()]) { ids in
            try await withCoordinator(data: directory.path) { url, client, http in
                _ = try await client.submit(branches: [branch(ids[0])], id: txid("order:7"), wait: .completion)
                for path in ["order:7", "order%3A7", "order%3a7", "%6Frder%3A7"] {
                    let shown = try await call(http, .GET, "\(url)/v1/transactions/\(path)")
                    #expect(shown.status == 200, "\(path)")
                    #expect(try WireJSON.decode(TransactionView.self, from: Array(shown.body.utf8)).id == "order:7")
                    let outcome = try await call(http, .GET, "\(url)/v1/transactions/\(path)/outcome")
                    #expect(try WireJSON.decode(OutcomeResponse.self, from: Array(outcome.body.utf8)) == OutcomeResponse(id: "order:7", outcome: .committed))
                }
                for path in ["order%2F7", "%C3%A9"] {
                    let refused = try await call(http, .GET, "\(url)/v1/transactions/\(path)")
                    #expect(refused.status == 400, "\(path)")
                    #expect(try WireJSON.decode(ErrorResponse.self, from: Array(refused.body.utf8)).error.field == "id")
                }
            }
        }
    }

    @Test("a method a path does not serve gets 405 with Allow and the JSON error; an unknown path 404")
    func methodNotAllowed() async throws {
        let directory = try TemporaryDirectory()
        try await withCoordinator(data: directory.path) { url, _, http in
            let cases: [(HTTPMethod, String, String)] = [
                (.DELETE, "/v1/transactions", "POST, GET"),
                (.PUT, "/v1/transactions/t-1", "GET"),
                (.POST, "/v1/transactions/t-1/outcome", "GET"),
                (.GET, "/v1/transaction-batch", "POST"),
                (.POST, "/healthz", "GET"),
            ]
            for (method, path, allow) in cases {
                let answer = try await call(http, method, url + path, body: method == .GET ? nil : "{}")
                #expect(answer.status == 405, "\(method) \(path)")
                #expect(answer.headers["Allow"].first == allow, "\(method) \(path)")
                #expect(try WireJSON.decode(ErrorResponse.self, from: Array(answer.body.utf8)).error.code == "method_not_allowed")
            }
            let unknown = try await call(http, .GET, url + "/v1/nothing-here")
            #expect(unknown.status == 404)
            #expect(try WireJSON.decode(ErrorResponse.self, from: Array(unknown.body.utf8)).error.code == "not_found")
        }
    }

    @Test("a body that says it is not JSON gets 415 and runs nothing; JSON with parameters, or no type, is read")
    func contentType() async throws {
        let directory = try TemporaryDirectory()
        try await withParticipants([FakeParticipant()]) { ids in
            try await withCoordinator(data: directory.path) { url, _, http in
                func body(_ id: String) -> String { #"{"id":"\#(id)","branches":[{"participant":"\#(ids[0])","payload":1}]}"# }
                for type in ["text/plain", "application/x-www-form-urlencoded", "application/jsonp"] {
                    let refused = try await call(http, .POST, url + "/v1/transactions", body: body("refused"), contentType: type)
                    #expect(refused.status == 415, "\(type)")
                    #expect(try WireJSON.decode(ErrorResponse.self, from: Array(refused.body.utf8)).error.code == "unsupported_media_type")
                }
                #expect(try await call(http, .GET, url + "/v1/transactions/refused").status == 404)

                for (index, type) in ["application/json", "application/json; charset=utf-8", "Application/JSON", nil].enumerated() {
                    let accepted = try await call(http, .POST, url + "/v1/transactions", body: body("ok-\(index)"), contentType: type)
                    #expect(accepted.status == 200, "\(type ?? "no Content-Type")")
                }
            }
        }
    }

    /// A raw call that shows the response headers; `contentType` nil sends none.
    private func call(
        _ http: HTTPClient, _ method: HTTPMethod, _ url: String, body: String? = nil,
        contentType: String? = "application/json", token: BearerSecret = TestSecrets.protocolSecret
    ) async throws -> (status: Int, headers: HTTPHeaders, body: String) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: token.authorizationHeaderValue)
        if let body {
            if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
            request.body = .bytes(Array(body.utf8))
        }
        let response = try await http.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), response.headers, String(buffer: bytes))
    }
}
