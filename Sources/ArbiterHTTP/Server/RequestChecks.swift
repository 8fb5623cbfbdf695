public import HTTPTypes
public import Hummingbird

// Checks of a request's form that the router does not make: a known path asked with a method it
// does not serve (405, not 404), and a body that says it is not JSON (415). Path parameters are
// percent-decoded by `Request.txid(pathParameter:context:)` (PercentEncoding.swift).

/// Answers `405 method_not_allowed`, with an `Allow` header, where the router would answer 404
/// for a path it serves with other methods.
///
/// Add it to the router right after ``APIErrorMiddleware``, before any route: the router's 404 goes
/// through router-level middleware, and the middleware only looks at a request when the router
/// found no route for it, so the routes themselves cost nothing more than a `do`.
public struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    /// The routes the router serves: a path in router form (`/v1/transactions/:id`) and a method.
    private let routes: [(segments: [Substring], method: HTTPRequest.Method)]

    /// Makes the middleware for a router serving `endpoints` and `extra` routes (router form).
    public init(endpoints: [WireEndpoint], extra: [(method: HTTPRequest.Method, path: String)] = []) {
        let all = endpoints.map { (method: $0.method, path: $0.routerPath) } + extra
        self.routes = all.map { (segments: Self.segments($0.path), method: $0.method) }
    }

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let allowed = allowedMethods(for: request.uri.path)
            guard !allowed.isEmpty else { throw error }
            let list = allowed.map(\.rawValue).joined(separator: ", ")
            var response = APIError(
                status: .methodNotAllowed,
                code: .methodNotAllowed,
                message: "\(request.method.rawValue) is not allowed on \(request.uri.path); use \(list)"
            ).response()
            response.headers[.allow] = list
            return response
        }
    }

    /// The methods served at `path`, in the order the routes were given; empty for an unknown path.
    func allowedMethods(for path: String) -> [HTTPRequest.Method] {
        let requested = Self.segments(path)
        var methods: [HTTPRequest.Method] = []
        for route in routes where Self.matches(route.segments, requested) && !methods.contains(route.method) {
            methods.append(route.method)
        }
        return methods
    }

    /// Empty segments count, so that `/v1/transactions/` is not taken for `/v1/transactions`
    /// (the router does not take it either).
    private static func segments(_ path: String) -> [Substring] {
        path.split(separator: "/", omittingEmptySubsequences: false)
    }

    /// Whether a path matches a route: the same number of segments, each equal or a `:parameter`.
    private static func matches(_ route: [Substring], _ path: [Substring]) -> Bool {
        route.count == path.count && zip(route, path).allSatisfy { pattern, segment in
            pattern.hasPrefix(":") || pattern == segment
        }
    }
}

/// The media type of a JSON request body.
public enum WireContentType {
    /// Checks a request's `Content-Type`: absent (curl without `-H`, say) or `application/json`,
    /// with any parameters (`; charset=utf-8`) and in any case.
    ///
    /// - Throws: ``APIError`` `unsupported_media_type` (415) for any other type.
    public static func check(_ value: String?) throws(APIError) {
        guard let value else { return }
        let mediaType = value.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        if mediaType.trimmingASCIIWhitespace().lowercased() == WireResponse.jsonContentType { return }
        throw APIError(
            status: .unsupportedMediaType,
            code: .unsupportedMediaType,
            message: "the request body must be JSON: send `Content-Type: application/json`, not `\(WireValidation.abbreviated(value))`"
        )
    }
}

extension Substring {
    fileprivate func trimmingASCIIWhitespace() -> Substring {
        var trimmed = self
        while let first = trimmed.first, first == " " || first == "\t" { trimmed.removeFirst() }
        while let last = trimmed.last, last == " " || last == "\t" { trimmed.removeLast() }
        return trimmed
    }
}
