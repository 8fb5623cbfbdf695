import Foundation
public import Hummingbird
import Synchronization

// What the coordinator's and the participant's dashboards share: browser sessions opened with an
// operator token, the middleware that admits a token or a session on the operator routes, the
// login routes (DashboardLogin.swift) and the HTML helpers (DashboardHTML.swift).

/// A dashboard's browser sessions, in memory only: a restart of the service logs everyone out.
///
/// A browser never holds the operator token: `POST /dashboard/login` checks it once and sets a
/// cookie with a random session id. Each session carries a CSRF token that the page sends back
/// with every POST, so another site cannot make the browser act with the cookie.
public final class DashboardSessions: Sendable {
    /// A logged-in browser.
    public struct Session: Sendable {
        /// The name of the operator token the session was opened with: the actor of its actions.
        public var actor: String
        /// The anti-forgery token every POST with the session's cookie must carry in `X-CSRF-Token`.
        public var csrf: String
        /// When the session ends.
        public var expires: ContinuousClock.Instant
    }

    /// How long a session lasts.
    public let lifetime: Duration
    /// How long a one-time login link (for scripts and tests) stays valid.
    public let linkLifetime: Duration
    /// Sessions kept at most; the oldest go first.
    public let sessionsMax = 1000
    private let sessions = Mutex<[String: Session]>([:])
    private let links = Mutex<[String: (actor: String, expires: ContinuousClock.Instant)]>([:])

    /// Makes an empty set of sessions.
    public init(lifetime: Duration = .seconds(8 * 3600), linkLifetime: Duration = .seconds(300)) {
        self.lifetime = lifetime
        self.linkLifetime = linkLifetime
    }

    /// Starts a session for `actor`; returns its id.
    public func start(actor: String) -> (id: String, session: Session) {
        let id = Self.randomToken()
        let session = Session(actor: actor, csrf: Self.randomToken(), expires: .now + lifetime)
        sessions.withLock { sessions in
            let now = ContinuousClock.now
            sessions = sessions.filter { $0.value.expires > now }
            if sessions.count >= sessionsMax, let oldest = sessions.min(by: { $0.value.expires < $1.value.expires }) {
                sessions[oldest.key] = nil
            }
            sessions[id] = session
        }
        return (id, session)
    }

    /// The live session `id`, if there is one.
    public func session(_ id: String) -> Session? {
        sessions.withLock { sessions in
            guard let session = sessions[id] else { return nil }
            guard session.expires > .now else {
                sessions[id] = nil
                return nil
            }
            return session
        }
    }

    /// The live session whose cookie `request` carries, if any.
    public func session(of request: Request) -> Session? {
        Self.sessionID(in: request).flatMap(session)
    }

    /// Ends session `id` (logging out).
    public func end(_ id: String) { _ = sessions.withLock { $0.removeValue(forKey: id) } }

    /// A one-time login link's secret for `actor`: redeemed once, within ``linkLifetime``.
    public func makeLink(actor: String) -> String {
        let secret = Self.randomToken()
        links.withLock { links in
            let now = ContinuousClock.now
            links = links.filter { $0.value.expires > now }
            links[secret] = (actor, now + linkLifetime)
        }
        return secret
    }

    /// Redeems a login link: the actor it was made for, once.
    public func redeem(_ secret: String) -> String? {
        links.withLock { links in
            guard let link = links.removeValue(forKey: secret), link.expires > .now else { return nil }
            return link.actor
        }
    }

    /// Who is acting: the operator token's name, or the name the session was opened with.
    public func actor(of request: Request, keyring: Keyring) -> String {
        if let name = keyring.identify(request.headers[.authorization])?.name { return name }
        return session(of: request)?.actor ?? "unknown"
    }

    /// 32 random bytes, hex.
    public static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// The session cookie's name.
    public static let cookieName = "arbiter_session"

    /// The session id in a request's `Cookie` header, if any.
    public static func sessionID(in request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for part in header.split(separator: ";") {
                let pair = part.trimmingCharacters(in: .whitespaces)
                if pair.hasPrefix(cookieName + "=") { return String(pair.dropFirst(cookieName.count + 1)) }
            }
        }
        return nil
    }
}

/// Admits an operator token (`Authorization: Bearer`), or a dashboard session cookie; a request
/// with the cookie that is not a GET or HEAD must also carry the session's CSRF token in
/// `X-CSRF-Token`.
public struct OperatorMiddleware<Context: RequestContext>: RouterMiddleware {
    private let keyring: Keyring
    private let sessions: DashboardSessions

    /// Admits the operator tokens of `keyring` and the live sessions of `sessions`.
    public init(keyring: Keyring, sessions: DashboardSessions) {
        self.keyring = keyring
        self.sessions = sessions
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.headers[.authorization] == nil, let id = DashboardSessions.sessionID(in: request) {
            guard let session = sessions.session(id) else {
                return APIError.unauthorized("the dashboard session has expired or is unknown; log in again at /dashboard").response()
            }
            if request.method != .get && request.method != .head {
                guard let csrf = request.headers[.csrfToken], csrf == session.csrf else {
                    return APIError.forbidden("a dashboard request that changes something needs the session's X-CSRF-Token header").response()
                }
            }
            return try await next(request, context)
        }
        return try await RoleMiddleware<Context>(keyring, allowing: [.operator], realm: "arbiter-operator")
            .handle(request, context: context, next: next)
    }
}
