public import Hummingbird
public import HTTPTypes
import Logging
import NIOCore

/// Refuses a request, with 401 and a JSON error, unless its `Authorization` header is
/// `Bearer <secret>` with one of the accepted secrets. The handler behind it does not run.
///
/// Secrets are compared in constant time and never logged; a refusal logs the method and path at
/// `debug` only, since a flood of bad requests should not flood the log.
public struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    private let secrets: [BearerSecret]
    private let realm: String

    /// Accepts any one of `secrets` (e.g. the protocol secret and the operator secret).
    ///
    /// - Parameter realm: Named in the `WWW-Authenticate` header of a refusal.
    public init(accepting secrets: [BearerSecret], realm: String = "arbiter") {
        precondition(!secrets.isEmpty, "a bearer-token middleware needs at least one secret")
        self.secrets = secrets
        self.realm = realm
    }

    /// Accepts `secret` only.
    public init(secret: BearerSecret, realm: String = "arbiter") {
        self.init(accepting: [secret], realm: realm)
    }

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard isAuthorized(request.headers[.authorization]) else {
            return unauthorized(request, context: context, realm: realm)
        }
        return try await next(request, context)
    }

    /// Whether `header` presents one of the accepted secrets. Checks every secret so that the time
    /// taken does not tell which one, if any, matched.
    func isAuthorized(_ header: String?) -> Bool {
        guard let header, let token = Keyring.bearerToken(header) else { return false }
        var matched = false
        for secret in secrets where secret.matches(token) {
            matched = true
        }
        return matched
    }
}

/// Turns every error thrown below it into a JSON error response (`{"error": {...}}`).
///
/// ``APIError`` is rendered as it is. Hummingbird's own errors map to the matching code
/// (`not_found` for an unknown route, `body_too_large` for a body over the limit). Anything else
/// is a bug or an outage: it is logged with the request id and answered `500 internal` without
/// details, which may hold internals.
///
/// Add it to the router before any route or other middleware so that it covers them all,
/// including the router's 404.
public struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Makes the middleware.
    public init() {}

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let apiError = APIErrorMiddleware.translate(error, request: request)
            if apiError.code == .internal {
                context.logger.error(
                    "request failed",
                    metadata: [
                        "method": "\(request.method.rawValue)", "path": "\(request.uri.path)",
                        "error": "\(String(reflecting: error))",
                    ]
                )
            }
            return apiError.response()
        }
    }

    /// The API error that stands for `error`.
    static func translate(_ error: any Error, request: Request) -> APIError {
        switch error {
        case let error as APIError:
            return error
        case let error as HTTPError:
            return translate(status: error.status, message: error.body, request: request)
        case is NIOTooManyBytesError:
            return APIError(status: .contentTooLarge, code: .bodyTooLarge, message: "the request body is larger than the limit")
        case let error as DecodingError:
            return APIError(error)
        case let error as any HTTPResponseError:
            return translate(status: error.status, message: nil, request: request)
        default:
            return .internal()
        }
    }

    static func translate(status: HTTPResponse.Status, message: String?, request: Request) -> APIError {
        switch status {
        case .notFound:
            return .notFound("no route for \(request.method.rawValue) \(request.uri.path)")
        case .methodNotAllowed:
            return APIError(status: status, code: .methodNotAllowed, message: "\(request.method.rawValue) is not allowed on \(request.uri.path)")
        case .contentTooLarge:
            return APIError(status: status, code: .bodyTooLarge, message: message ?? "the request body is larger than the limit")
        case .unauthorized:
            return .unauthorized()
        case .serviceUnavailable:
            return .unavailable(message ?? "the service is unavailable; retry later")
        default:
            if status.kind == .clientError {
                return .invalidValue(nil, message ?? status.reasonPhrase)
            }
            return .internal()
        }
    }
}

extension APIError: HTTPResponseError {
    /// The JSON error response (`{"error": {"code", "message", "field"?}}`) with this status.
    public func response() -> Response {
        let body = (try? WireJSON.encode(ErrorResponse(self))) ?? Array(#"{"error":{"code":"internal","message":"internal error"}}"#.utf8)
        var headers: HTTPFields = [.contentType: WireResponse.jsonContentType]
        if status == .unauthorized {
            headers[.wwwAuthenticate] = "Bearer realm=\"arbiter\""
        }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        response()
    }
}

/// Lets a request through only when its bearer token belongs to one of the `allowed` roles of a
/// ``Keyring``: no token or an unknown one gets 401 `unauthorized`, a known token of another role
/// 403 `forbidden`, with the JSON error body; the handler behind it does not run.
///
/// The keyring may change under it (token files re-read on SIGHUP); each request sees the tokens
/// current when it arrived.
public struct RoleMiddleware<Context: RequestContext>: RouterMiddleware {
    private let keyring: Keyring
    private let allowed: Set<CredentialRole>
    private let realm: String

    /// Admits the tokens of `keyring` that hold one of `allowed`.
    public init(_ keyring: Keyring, allowing allowed: Set<CredentialRole>, realm: String = "arbiter") {
        precondition(!allowed.isEmpty, "a role middleware admits at least one role")
        self.keyring = keyring
        self.allowed = allowed
        self.realm = realm
    }

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard let holder = keyring.identify(request.headers[.authorization]) else {
            return unauthorized(request, context: context, realm: realm)
        }
        guard !holder.roles.isDisjoint(with: allowed) else {
            context.logger.notice(
                "refused a request whose credential has another role",
                metadata: ["method": "\(request.method.rawValue)", "path": "\(request.uri.path)",
                           "holder": "\(holder.name)", "roles": "\(holder.roles.map(\.rawValue).sorted())"]
            )
            let needed = allowed.map(\.rawValue).sorted().joined(separator: " or ")
            let held = holder.roles.map(\.rawValue).sorted().joined(separator: ", ")
            return APIError.forbidden(
                "\(request.method.rawValue) \(request.uri.path) needs a \(needed) credential; the token presented is a \(held) credential"
            ).response()
        }
        return try await next(request, context)
    }
}

/// The 401 answer to a request without a valid bearer token, logged at `debug` only: a flood of
/// bad requests should not flood the log.
private func unauthorized(_ request: Request, context: some RequestContext, realm: String) -> Response {
    context.logger.debug(
        "refused a request without a valid bearer token",
        metadata: ["method": "\(request.method.rawValue)", "path": "\(request.uri.path)"]
    )
    var response = APIError.unauthorized().response()
    response.headers[.wwwAuthenticate] = "Bearer realm=\"\(realm)\""
    return response
}

extension HTTPField.Name {
    /// `X-CSRF-Token`: the dashboard session's anti-forgery token, sent with every POST.
    public static let csrfToken = HTTPField.Name("X-CSRF-Token")!
    /// `Content-Security-Policy`.
    public static let contentSecurityPolicy = HTTPField.Name("Content-Security-Policy")!
}
