import ArbiterHTTP
import AsyncHTTPClient
import NIOCore
import NIOHTTP1

/// An HTTP answer as the tests read it.
struct RawReply: Sendable {
    var status: Int
    var body: String
}

/// One raw request, with a bearer token and a JSON body when given: for tests that send what the
/// typed clients would not (a client's token at a participant, readiness probes).
func rawRequest(
    _ http: HTTPClient, _ method: HTTPMethod, _ url: String, _ body: String? = nil, token: BearerSecret?
) async throws -> RawReply {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let token { request.headers.add(name: "Authorization", value: token.authorizationHeaderValue) }
    if let body {
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(Array(body.utf8))
    }
    let response = try await http.execute(request, timeout: .seconds(60))
    return RawReply(status: Int(response.status.code), body: String(buffer: try await response.body.collect(upTo: 1 << 20)))
}
