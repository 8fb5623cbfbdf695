import ArbiterCore
import ArbiterHTTP
import ArbiterStorage
import Foundation
import Hummingbird
import Synchronization

/// The dashboard's browser sessions, in memory only: a coordinator restart logs everyone out.
///
/// A browser never holds the operator token: `POST /dashboard/login` checks it once and sets a
/// cookie with a random session id. Each session carries a CSRF token that the page sends back
/// with every POST, so another site cannot make the browser act with the cookie.
final class DashboardSessions: Sendable {
    struct Session: Sendable {
        var actor: String
        var csrf: String
        var expires: ContinuousClock.Instant
    }

    /// How long a session lasts.
    let lifetime: Duration
    /// How long a one-time login link (for scripts and tests) stays valid.
    let linkLifetime: Duration
    /// Sessions kept at most; the oldest go first.
    let sessionsMax = 1000
    private let sessions = Mutex<[String: Session]>([:])
    private let links = Mutex<[String: (actor: String, expires: ContinuousClock.Instant)]>([:])

    init(lifetime: Duration = .seconds(8 * 3600), linkLifetime: Duration = .seconds(300)) {
        self.lifetime = lifetime
        self.linkLifetime = linkLifetime
    }

    /// Starts a session for `actor`; returns its id.
    func start(actor: String) -> (id: String, session: Session) {
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
    func session(_ id: String) -> Session? {
        sessions.withLock { sessions in
            guard let session = sessions[id] else { return nil }
            guard session.expires > .now else {
                sessions[id] = nil
                return nil
            }
            return session
        }
    }

    func end(_ id: String) { _ = sessions.withLock { $0.removeValue(forKey: id) } }

    /// A one-time login link's secret for `actor`: redeemed once, within ``linkLifetime``.
    func makeLink(actor: String) -> String {
        let secret = Self.randomToken()
        links.withLock { links in
            let now = ContinuousClock.now
            links = links.filter { $0.value.expires > now }
            links[secret] = (actor, now + linkLifetime)
        }
        return secret
    }

    /// Redeems a login link: the actor it was made for, once.
    func redeem(_ secret: String) -> String? {
        links.withLock { links in
            guard let link = links.removeValue(forKey: secret), link.expires > .now else { return nil }
            return link.actor
        }
    }

    /// 32 random bytes, hex.
    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    static let cookieName = "arbiter_session"

    /// The session id in a request's `Cookie` header, if any.
    static func sessionID(in request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for part in header.split(separator: ";") {
                let pair = part.trimmingCharacters(in: .whitespaces)
                if pair.hasPrefix(cookieName + "=") { return String(pair.dropFirst(cookieName.count + 1)) }
            }
        }
        return nil
    }
}

/// Admits an operator token (`Authorization: Bearer`), or a dashboard session cookie; a POST with
/// the cookie must also carry the session's CSRF token in `X-CSRF-Token`.
struct OperatorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let keyring: Keyring
    let sessions: DashboardSessions

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
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

    /// Who is acting: the operator token's name, or the name the session was opened with.
    static func actor(of request: Request, keyring: Keyring, sessions: DashboardSessions) -> String {
        if let name = keyring.identify(request.headers[.authorization])?.name { return name }
        if let id = DashboardSessions.sessionID(in: request), let session = sessions.session(id) { return session.actor }
        return "unknown"
    }
}

/// Per-second counts of finished transactions and their latency, for the last ``seconds``
/// seconds: the dashboard's throughput and latency charts. Bounded; old seconds are overwritten.
final class ActivityRing: Sendable {
    struct Second: Sendable, Hashable {
        var epochSecond: Int64 = 0
        var committed = 0
        var aborted = 0
        var latencyTotalMs = 0.0
    }

    let seconds: Int
    private let ring: Mutex<[Second]>
    private let finished = Mutex((committed: 0, aborted: 0))

    /// Transactions finished since start, by outcome.
    func totals() -> (committed: Int, aborted: Int) { finished.withLock { $0 } }

    init(seconds: Int = 300) {
        precondition(seconds > 0)
        self.seconds = seconds
        ring = Mutex(Array(repeating: Second(), count: seconds))
    }

    /// Counts one finished transaction now.
    func record(_ outcome: Outcome, latency: Duration?, now: Date = Date()) {
        let second = Int64(now.timeIntervalSince1970)
        let latencyMs = latency.map { Double($0.components.seconds) * 1000 + Double($0.components.attoseconds) / 1e15 } ?? 0
        finished.withLock { if outcome == .committed { $0.committed += 1 } else { $0.aborted += 1 } }
        ring.withLock { ring in
            let index = Int(second % Int64(seconds))
            if ring[index].epochSecond != second { ring[index] = Second(epochSecond: second) }
            if outcome == .committed { ring[index].committed += 1 } else { ring[index].aborted += 1 }
            ring[index].latencyTotalMs += latencyMs
        }
    }

    /// The last `count` whole seconds before `now`, oldest first (empty seconds included).
    func last(_ count: Int, now: Date = Date()) -> [Second] {
        let current = Int64(now.timeIntervalSince1970)
        let count = min(count, seconds - 1)
        return ring.withLock { ring in
            (1...count).reversed().map { back in
                let second = current - Int64(back)
                let slot = ring[Int(second % Int64(seconds))]
                return slot.epochSecond == second ? slot : Second(epochSecond: second)
            }
        }
    }
}

/// `GET /dashboard/api/summary`: everything the page shows, in one poll.
struct DashboardSummary: Encodable, Sendable, ResponseGenerator {
    struct Counts: Encodable, Sendable {
        var preparing: Int
        var committing: Int
        var aborting: Int
        var committed: Int
        var aborted: Int
    }
    struct SecondView: Encodable, Sendable {
        var t: Int64
        var committed: Int
        var aborted: Int
        var latencyMs: Double?
    }
    struct ParticipantView: Encodable, Sendable {
        var name: String
        var url: String
        var outstandingMessages: Int
        var owedAcknowledgements: Int
        var unreachableSeconds: Double
    }
    var counts: Counts
    var seconds: [SecondView]
    var stuck: [StuckTransaction]
    var participants: [ParticipantView]
    var audit: [OperatorAuditEntry]
    var csrf: String?

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let data = try JSONEncoder().encode(self)
        return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension CoordinatorRoutes {
    /// The dashboard: `GET /dashboard` (the page, or the login form), `POST /dashboard/login`,
    /// `POST /dashboard/logout`, and `GET /dashboard/api/summary` behind the operator middleware.
    func dashboardRoutes(_ router: Router<BasicRequestContext>, _ operatorRoutes: RouterGroup<BasicRequestContext>) {
        router.get("/dashboard") { request, _ -> Response in
            if let secret = request.uri.queryParameters.get("login") {
                guard let actor = sessions.redeem(secret) else {
                    return Self.html(DashboardPage.login(message: "That login link has been used or has expired."), status: .unauthorized)
                }
                return startSession(actor: actor)
            }
            guard let id = DashboardSessions.sessionID(in: request), sessions.session(id) != nil else {
                return Self.html(DashboardPage.login(message: nil))
            }
            return Self.html(DashboardPage.page)
        }
        router.post("/dashboard/login") { request, _ -> Response in
            var request = request
            let body = try await request.collectBody(upTo: 4096)
            let form = Self.formFields(String(decoding: body.readableBytesView, as: UTF8.self))
            guard let token = form["token"], let holder = keyring.identify("Bearer \(token)"), holder.roles.contains(.operator) else {
                return Self.html(DashboardPage.login(message: "That is not an operator token."), status: .unauthorized)
            }
            if form["link"] == "1" {
                // A one-time link for a browser that cannot be handed a cookie (a headless test, a script).
                let link = "/dashboard?login=\(sessions.makeLink(actor: holder.name))"
                return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                                body: ResponseBody(byteBuffer: ByteBuffer(string: "{\"loginLink\":\"\(link)\"}")))
            }
            return startSession(actor: holder.name)
        }
        router.post("/dashboard/logout") { request, _ -> Response in
            if let id = DashboardSessions.sessionID(in: request) { sessions.end(id) }
            var response = Response(status: .seeOther, headers: [.location: "/dashboard"])
            response.headers[.setCookie] = "\(DashboardSessions.cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
            return response
        }
        operatorRoutes.get("/dashboard/api/summary") { request, _ in try await summary(request) }
    }

    /// Opens a session and sends the browser to the page with its cookie: HttpOnly (the page's
    /// script never reads it), SameSite=Strict (other sites' requests do not carry it).
    private func startSession(actor: String) -> Response {
        let (id, _) = sessions.start(actor: actor)
        var response = Response(status: .seeOther, headers: [.location: "/dashboard", .cacheControl: "no-store"])
        let maxAge = sessions.lifetime.components.seconds
        response.headers[.setCookie] = "\(DashboardSessions.cookieName)=\(id); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(maxAge)"
        return response
    }

    private func summary(_ request: Request) async throws -> DashboardSummary {
        let counts = try await storage { try await engine.log.openCounts() }
        let totals = engine.activity.totals()
        let owed = await engine.owedAcknowledgements()
        let reachability = Dictionary(engine.links.reachability().map { ($0.participant.rawValue, $0) }, uniquingKeysWith: { a, _ in a })
        let registered = options.participants.entries
        let unregistered = reachability.keys.filter { url in !registered.contains { $0.url == url } }.sorted()
            .map { ParticipantRegistry.Entry(name: $0, url: $0) }
        let participants = (registered + unregistered).map { entry in
            let link = reachability[entry.url]
            return DashboardSummary.ParticipantView(
                name: entry.name, url: entry.url, outstandingMessages: link?.outstandingMessages ?? 0,
                owedAcknowledgements: owed[ParticipantID(entry.url)] ?? 0,
                unreachableSeconds: link.map { Double($0.unreachableFor.components.seconds) } ?? 0)
        }
        let csrf = DashboardSessions.sessionID(in: request).flatMap { sessions.session($0)?.csrf }
        return DashboardSummary(
            counts: .init(preparing: counts["active"] ?? 0, committing: counts["committing"] ?? 0, aborting: counts["aborting"] ?? 0,
                          committed: totals.committed, aborted: totals.aborted),
            seconds: engine.activity.last(120).map { second in
                let finished = second.committed + second.aborted
                return .init(t: second.epochSecond, committed: second.committed, aborted: second.aborted,
                             latencyMs: finished > 0 ? second.latencyTotalMs / Double(finished) : nil)
            },
            stuck: try await stuckTransactions(olderThanMs: 1000, limit: 50),
            participants: participants,
            audit: try await auditEntries(limit: 20, before: nil),
            csrf: csrf)
    }

    static func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [
            .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
            .contentSecurityPolicy: "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    /// `application/x-www-form-urlencoded` fields.
    static func formFields(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            if parts.count == 2 { fields[parts[0]] = parts[1] }
        }
        return fields
    }
}
