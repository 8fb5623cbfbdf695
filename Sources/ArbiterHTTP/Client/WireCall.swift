public import AsyncHTTPClient
public import Logging
import NIOCore
public import NIOHTTP1

/// Why a call over the wire protocol failed.
public struct WireCallError: Error, CustomStringConvertible {
    /// The broad class of failure, which decides what a caller may do next.
    public enum Kind: String, Hashable, Sendable {
        /// No answer: the connection could not be made or broke (refused, reset, DNS, TLS). The
        /// request may or may not have been processed; retry with the same transaction id.
        case unreachable
        /// The deadline passed before the answer arrived. As uncertain as ``unreachable``.
        case timedOut
        /// The server answered with an error status; ``WireCallError/detail`` holds its JSON error
        /// when it sent one.
        case rejected
        /// The server answered 2xx with a body that is not what the protocol says.
        case invalidResponse
        /// The calling task was cancelled.
        case cancelled
    }

    /// The class of failure.
    public var kind: Kind
    /// What went wrong, for people.
    public var message: String
    /// The HTTP status, when the server answered.
    public var status: Int?
    /// The server's error body (`{"error": {...}}`), when it sent one.
    public var detail: ErrorDetail?
    /// The underlying error, when there is one.
    public var cause: (any Error)?

    /// Makes an error.
    public init(kind: Kind, message: String, status: Int? = nil, detail: ErrorDetail? = nil, cause: (any Error)? = nil) {
        self.kind = kind
        self.message = message
        self.status = status
        self.detail = detail
        self.cause = cause
    }

    /// Whether retrying the same request (with the same transaction id) may succeed: the peer was
    /// unreachable or slow, or it answered 5xx.
    public var isRetryable: Bool {
        switch kind {
        case .unreachable, .timedOut: return true
        case .rejected: return (status ?? 0) >= 500
        case .invalidResponse, .cancelled: return false
        }
    }

    public var description: String {
        var text = "\(kind): \(message)"
        if let status { text += " (HTTP \(status))" }
        if let cause { text += "; cause: \(cause)" }
        return text
    }
}

/// One HTTP exchange of the wire protocol with AsyncHTTPClient: JSON in, JSON out, bearer token,
/// deadline, and errors sorted into ``WireCallError/Kind``s.
public enum WireCall {
    /// A raw answer.
    public struct Reply: Sendable {
        /// The HTTP status.
        public var status: Int
        /// The response body.
        public var body: [UInt8]
    }

    /// Sends one request and collects the answer's body (at most `responseSizeMax` bytes).
    ///
    /// - Parameter connections: When given and `url` is plain `http`, the request goes on one of
    ///   these connections instead of `client` (see ``HTTP1Connections``).
    public static func execute(
        _ client: HTTPClient,
        connections: HTTP1Connections? = nil,
        method: HTTPMethod,
        url: String,
        body: [UInt8]?,
        secret: BearerSecret?,
        timeout: Duration,
        responseSizeMax: Int,
        traceparent: String? = nil,
        logger: Logger? = nil
    ) async throws(WireCallError) -> Reply {
        var headers = [("Accept", "application/json")]
        if let secret { headers.append(("Authorization", secret.authorizationHeaderValue)) }
        if let traceparent { headers.append((TraceParent.headerName, traceparent)) }
        if body != nil { headers.append(("Content-Type", "application/json")) }
        if let connections, let target = HTTP1Connections.target(url) {
            return try await connections.execute(
                method: method, target: target, url: url, headers: headers, body: body, timeout: timeout,
                responseSizeMax: responseSizeMax
            )
        }
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        do {
            let response = try await client.execute(request, timeout: TimeAmount(timeout), logger: logger)
            let buffer = try await response.body.collect(upTo: responseSizeMax)
            return Reply(status: Int(response.status.code), body: Array(buffer.readableBytesView))
        } catch {
            throw classify(error, url: url)
        }
    }

    /// Sends `body` (when given) as JSON and decodes a 2xx answer as `T`; any other status becomes
    /// ``WireCallError/Kind/rejected`` carrying the server's JSON error.
    public static func call<T: Decodable>(
        _ client: HTTPClient,
        connections: HTTP1Connections? = nil,
        method: HTTPMethod,
        url: String,
        body: (any Encodable)?,
        secret: BearerSecret?,
        timeout: Duration,
        responseSizeMax: Int,
        as type: T.Type,
        traceparent: String? = nil,
        logger: Logger? = nil
    ) async throws(WireCallError) -> T {
        var bytes: [UInt8]?
        if let body {
            do {
                bytes = try WireJSON.encode(body)
            } catch {
                throw WireCallError(kind: .invalidResponse, message: "could not encode the request: \(error)", cause: error)
            }
        }
        let reply = try await execute(
            client, connections: connections, method: method, url: url, body: bytes, secret: secret, timeout: timeout,
            responseSizeMax: responseSizeMax, traceparent: traceparent, logger: logger
        )
        return try decode(type, from: reply, url: url)
    }

    /// Decodes a raw answer: `T` for 2xx, a ``WireCallError`` otherwise.
    public static func decode<T: Decodable>(_ type: T.Type, from reply: Reply, url: String) throws(WireCallError) -> T {
        guard (200..<300).contains(reply.status) else {
            let detail = try? WireJSON.decode(ErrorResponse.self, from: reply.body).error
            throw WireCallError(
                kind: .rejected,
                message: detail?.message ?? "\(url) answered HTTP \(reply.status)",
                status: reply.status,
                detail: detail
            )
        }
        do {
            return try WireJSON.decode(type, from: reply.body)
        } catch {
            throw WireCallError(
                kind: .invalidResponse,
                message: "\(url) answered with a body that does not follow the protocol: \(error.message)",
                status: reply.status,
                cause: error
            )
        }
    }

    /// Sends `body` as JSON and reads a 2xx answer as newline-delimited JSON: each line, decoded
    /// as `T`, goes to `line` as soon as it arrives. Any other status becomes
    /// ``WireCallError/Kind/rejected`` carrying the server's JSON error.
    ///
    /// - Parameter lineSizeMax: The longest line read, in bytes; also the largest error body.
    public static func streamLines<T: Decodable>(
        _ client: HTTPClient,
        url: String,
        body: some Encodable,
        secret: BearerSecret?,
        timeout: Duration,
        lineSizeMax: Int,
        as type: T.Type,
        logger: Logger? = nil,
        line: (T) -> Void
    ) async throws(WireCallError) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Accept", value: "application/x-ndjson, application/json")
        if let secret {
            request.headers.add(name: "Authorization", value: secret.authorizationHeaderValue)
        }
        request.headers.add(name: "Content-Type", value: "application/json")
        do {
            request.body = .bytes(ByteBuffer(bytes: try WireJSON.encode(body)))
        } catch {
            throw WireCallError(kind: .invalidResponse, message: "could not encode the request: \(error)", cause: error)
        }
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: TimeAmount(timeout), logger: logger)
        } catch {
            throw classify(error, url: url)
        }
        guard (200..<300).contains(response.status.code) else {
            let bytes: [UInt8]
            do {
                bytes = Array(try await response.body.collect(upTo: lineSizeMax).readableBytesView)
            } catch {
                throw classify(error, url: url)
            }
            _ = try decode(T.self, from: Reply(status: Int(response.status.code), body: bytes), url: url)
            return
        }
        var pending: [UInt8] = []
        do {
            for try await buffer in response.body {
                pending.append(contentsOf: buffer.readableBytesView)
                var start = 0
                while let end = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                    if end > start {
                        line(try decodeLine(T.self, pending[start..<end], url: url))
                    }
                    start = end + 1
                }
                pending.removeFirst(start)
                guard pending.count <= lineSizeMax else {
                    throw WireCallError(kind: .invalidResponse, message: "\(url) answered with a line over \(lineSizeMax) bytes")
                }
            }
        } catch let error as WireCallError {
            throw error
        } catch {
            throw classify(error, url: url)
        }
        if !pending.isEmpty {
            line(try decodeLine(T.self, pending[...], url: url))
        }
    }

    private static func decodeLine<T: Decodable>(_ type: T.Type, _ bytes: ArraySlice<UInt8>, url: String) throws(WireCallError) -> T {
        do {
            return try WireJSON.decode(type, from: Array(bytes))
        } catch {
            throw WireCallError(
                kind: .invalidResponse,
                message: "\(url) answered with a line that does not follow the protocol: \(error.message)",
                cause: error
            )
        }
    }

    static func classify(_ error: any Error, url: String) -> WireCallError {
        if error is CancellationError {
            return WireCallError(kind: .cancelled, message: "the call to \(url) was cancelled", cause: error)
        }
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .writeTimeout:
                return WireCallError(kind: .timedOut, message: "\(url) did not answer before the deadline", cause: error)
            case .cancelled:
                return WireCallError(kind: .cancelled, message: "the call to \(url) was cancelled", cause: error)
            case .invalidURL, .emptyHost, .emptyScheme:
                return WireCallError(kind: .unreachable, message: "\(url) is not a usable URL", cause: error)
            default:
                break
            }
        }
        if error is NIOTooManyBytesError {
            return WireCallError(kind: .invalidResponse, message: "\(url) answered with a body over the size limit", cause: error)
        }
        return WireCallError(kind: .unreachable, message: "could not reach \(url)", cause: error)
    }
}
