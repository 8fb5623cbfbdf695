import ArbiterCore
@testable import ArbiterHTTP
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite("Request checks: methods, media types, percent-encoded ids, listing cursors")
struct RequestCheckTests {
    @Test("a method a known path does not serve gets 405, the JSON error and Allow; an unknown path 404")
    func methodNotAllowed() async throws {
        let handled = Counter()
        let router = Router()
        router.add(middleware: APIErrorMiddleware())
        router.add(middleware: MethodNotAllowedMiddleware(endpoints: [.submit, .list, .outcome]))
        router.post("/v1/transactions") { _, _ in handled.increment(); return HealthResponse() }
        router.get("/v1/transactions") { _, _ in handled.increment(); return HealthResponse() }
        router.get("/v1/transactions/:id/outcome") { _, _ in handled.increment(); return HealthResponse() }
        let app = Application(router: router, logger: testLogger("405"))
        try await app.test(.router) { client in
            let cases: [(HTTPRequest.Method, String, String)] = [
                (.delete, "/v1/transactions", "POST, GET"),
                (.post, "/v1/transactions/t-1/outcome", "GET"),
                (.head, "/v1/transactions/a%3Ab/outcome", "GET"),
            ]
            for (method, path, allow) in cases {
                let response = try await client.execute(uri: path, method: method, headers: authorized, body: ByteBuffer(string: "{}"))
                #expect(response.status == .methodNotAllowed, "\(method) \(path)")
                #expect(response.headers[.allow] == allow)
                if method != .head {
                    let error = try WireJSON.decode(ErrorResponse.self, from: response.body).error
                    #expect(error.code == "method_not_allowed")
                    #expect(error.message.contains(allow))
                }
            }
            for path in ["/v1/transactions/t-1", "/v1/other", "/v1/transactions/t-1/outcome/more"] {
                let response = try await client.execute(uri: path, method: .get, headers: authorized)
                #expect(response.status == .notFound, "\(path)")
                #expect(try WireJSON.decode(ErrorResponse.self, from: response.body).error.code == "not_found")
            }
            let served = try await client.execute(uri: "/v1/transactions/t-1/outcome", method: .get, headers: authorized)
            #expect(served.status == .ok)
        }
        #expect(handled.count == 1)
    }

    @Test("a body whose Content-Type is not JSON gets 415 before it is read; JSON and no type are read")
    func contentType() async throws {
        let handled = Counter()
        let app = Application(router: makeTestRouter(handled: handled), logger: testLogger("415"))
        let body = #"{"id": "t-1", "branches": \#(branches(1))}"#
        try await app.test(.router) { client in
            for type in ["text/plain", "text/plain; charset=utf-8", "application/xml", "application/jsonx", "multipart/form-data; boundary=x", ""] {
                var headers = authorized
                headers[.contentType] = type
                let response = try await client.execute(uri: "/v1/transactions", method: .post, headers: headers, body: ByteBuffer(string: body))
                #expect(response.status == .unsupportedMediaType, "\(type)")
                let error = try WireJSON.decode(ErrorResponse.self, from: response.body).error
                #expect(error.code == "unsupported_media_type")
                #expect(error.message.contains("application/json"))
            }
            for type in ["application/json", "application/json;charset=utf-8", " APPLICATION/JSON ; charset=UTF-8", nil] {
                var headers = authorized
                headers[.contentType] = type
                let response = try await client.execute(uri: "/v1/transactions", method: .post, headers: headers, body: ByteBuffer(string: body))
                #expect(response.status == .ok, "\(type ?? "no Content-Type")")
            }
        }
    }

    @Test("path ids are percent-decoded before they are checked")
    func percentEncodedIDs() async throws {
        let app = Application(router: makeTestRouter(handled: Counter()), logger: testLogger("percent"))
        try await app.test(.router) { client in
            for (path, id) in [("a:b", "a:b"), ("a%3Ab", "a:b"), ("a%3ab", "a:b"), ("%61%2D1", "a-1")] {
                let response = try await client.execute(uri: "/v1/transactions/\(path)/outcome", method: .get, headers: authorized)
                #expect(response.status == .ok, "\(path)")
                #expect(try WireJSON.decode(OutcomeResponse.self, from: response.body).id == id)
            }
            for path in ["a%2Fb", "a%3", "a%3G", "a%", "%C3%A9", "%FF", "a%20b"] {
                let response = try await client.execute(uri: "/v1/transactions/\(path)/outcome", method: .get, headers: authorized)
                #expect(response.status == .badRequest, "\(path)")
                let error = try WireJSON.decode(ErrorResponse.self, from: response.body).error
                #expect(error.code == "invalid_value" && error.field == "id", "\(path)")
            }
        }
    }

    @Test("the listing takes a cursor as `after`, not a transaction id")
    func listingCursor() async throws {
        let app = Application(router: makeTestRouter(handled: Counter()), logger: testLogger("cursor"))
        let operatorHeaders: HTTPFields = [.authorization: TestSecrets.operatorSecret.authorizationHeaderValue]
        try await app.test(.router) { client in
            let page = try await client.execute(uri: "/v1/transactions?after=1042", method: .get, headers: operatorHeaders)
            #expect(page.status == .ok)
            #expect(try WireJSON.decode(TransactionPage.self, from: page.body).next == "1042")
            for after in ["transfer-42", "t%3A1", "1.5", "", "+1"] {
                let response = try await client.execute(uri: "/v1/transactions?after=\(after)", method: .get, headers: operatorHeaders)
                #expect(response.status == .badRequest, "after=\(after)")
                #expect(try WireJSON.decode(ErrorResponse.self, from: response.body).error.field == "after")
            }
        }
        #expect(ListQuery.isCursor("0") && ListQuery.isCursor("9223372036854775807"))
        #expect(!ListQuery.isCursor("9223372036854775808") && !ListQuery.isCursor("") && !ListQuery.isCursor("٣"))
    }

    @Test("percent-encoding round-trips any text")
    func percentEncoding() {
        for text in ["", "a:b", "a b/c?d=e&f", "é😀", "%", "%25"] {
            #expect(PercentEncoding.decoded(PercentEncoding.encoded(text)) == text)
        }
        #expect(PercentEncoding.encoded("a:b c") == "a%3Ab%20c")
        #expect(PercentEncoding.decoded("%") == nil && PercentEncoding.decoded("%4") == nil && PercentEncoding.decoded("%C3") == nil)
    }
}
