public import ArbiterCore
public import Hummingbird
import HTTPTypes
import NIOCore

/// Building responses in the wire format.
public enum WireResponse {
    /// `application/json`, the type of every JSON body.
    public static let jsonContentType = "application/json"
    /// Newline-delimited JSON (one JSON value per line), the type of a streamed batch of answers.
    public static let ndjsonContentType = "application/x-ndjson"
    /// The Prometheus text exposition format's content type.
    public static let prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

    /// A JSON response with `value` encoded by ``WireJSON``.
    public static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let bytes = try WireJSON.encode(value)
        return Response(
            status: status,
            headers: [.contentType: jsonContentType],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes))
        )
    }

    /// A `GET /metrics` response holding Prometheus text.
    public static func prometheus(_ text: String) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: prometheusContentType],
            body: ResponseBody(byteBuffer: ByteBuffer(string: text))
        )
    }
}

/// A response body that renders itself with ``WireJSON`` whatever the request context's encoder,
/// so that payloads keep their bytes. Route handlers can return these types directly.
public protocol WireResponseBody: Encodable, ResponseGenerator {}

extension WireResponseBody {
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        try WireResponse.json(self)
    }
}

extension SubmitResponse: WireResponseBody {}
extension TransactionView: WireResponseBody {}
extension TransactionPage: WireResponseBody {}
extension RetryResponse: WireResponseBody {}
extension StuckList: WireResponseBody {}
extension OperatorAuditTrail: WireResponseBody {}
extension OutcomeResponse: WireResponseBody {}
extension HealthResponse: WireResponseBody {}
extension ReadyResponse: WireResponseBody {}
extension PrepareReply: WireResponseBody {}
extension AcknowledgeReply: WireResponseBody {}
extension BatchResponse: WireResponseBody {}
extension ErrorResponse: WireResponseBody {}

extension Request {
    /// Reads the body, at most `bodySizeMax` bytes, and decodes it strictly as `T`.
    ///
    /// A declared `Content-Length` over the limit is refused before anything is read.
    ///
    /// - Throws: ``APIError`` `body_too_large` (413) for a body over the limit, `invalid_json`
    ///   for an empty or malformed body, `unsupported_media_type` (415) for a `Content-Type` that
    ///   is present and not `application/json` (an absent one is taken as JSON), and the decoding
    ///   errors of ``WireJSON/decode(_:from:)``; the underlying error when the connection fails
    ///   while the body is read.
    public func decodeWire<T: Decodable>(_ type: T.Type, bodySizeMax: Int) async throws -> T {
        try WireContentType.check(headers[.contentType])
        if let declared = headers[.contentLength], let length = Int(declared), length > bodySizeMax {
            throw APIError.bodyTooLarge(limit: bodySizeMax)
        }
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: bodySizeMax)
        } catch is NIOTooManyBytesError {
            throw APIError.bodyTooLarge(limit: bodySizeMax)
        }
        guard buffer.readableBytes > 0 else {
            throw APIError.invalidJSON("the request body is empty; expected a JSON object")
        }
        return try WireJSON.decode(type, from: buffer)
    }

    /// The transaction id in path parameter `name` (`/v1/transactions/{id}`), percent-decoded
    /// (`a%3Ab` is `a:b`).
    ///
    /// - Throws: ``APIError`` naming the parameter when it is missing, badly percent-encoded or
    ///   not a valid id.
    public func txid(pathParameter name: String = "id", context: some RequestContext) throws(APIError) -> TxID {
        guard let encoded = context.parameters.get(name) else {
            throw APIError.invalidValue(name, "path parameter `\(name)` is missing")
        }
        guard let text = PercentEncoding.decoded(encoded) else {
            throw APIError.invalidValue(name, "path parameter `\(name)`: a `%` must be followed by two hex digits of UTF-8")
        }
        return try WireValidation.txid(text, field: name)
    }

    /// The listing's query (`state`, `limit`, `after`), validated.
    public func listQuery(limits: WireLimits) throws(APIError) -> ListQuery {
        let parameters = uri.queryParameters.map { (name: String($0.key), value: String($0.value)) }
        return try ListQuery(parameters: parameters, limits: limits)
    }
}
