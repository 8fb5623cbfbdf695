import HTTPTypes
public import Hummingbird
import NIOCore

/// A dashboard's login and logout: `GET /dashboard` (the page with a live session, the login form
/// without one, or a one-time link redeemed), `POST /dashboard/login` and `POST /dashboard/logout`.
/// The service adds the routes its page reads behind an ``OperatorMiddleware``.
public struct DashboardLogin: Sendable {
    /// Whose operator tokens open a session.
    public let keyring: Keyring
    /// The sessions opened.
    public let sessions: DashboardSessions
    /// The login form's heading: which service this is ("Arbiter coordinator").
    public let service: String
    /// The page a browser with a live session gets.
    public let page: String

    /// Makes the routes of a dashboard serving `page`.
    public init(keyring: Keyring, sessions: DashboardSessions, service: String, page: String) {
        self.keyring = keyring
        self.sessions = sessions
        self.service = service
        self.page = page
    }

    /// Adds `GET /dashboard`, `POST /dashboard/login` and `POST /dashboard/logout` to `router`.
    public func add<Context: RequestContext>(to router: Router<Context>) {
        router.get("/dashboard") { request, _ -> Response in
            if let secret = request.uri.queryParameters.get("login") {
                guard let actor = sessions.redeem(secret) else {
                    return loginForm("That login link has been used or has expired.", status: .unauthorized)
                }
                return startSession(actor: actor)
            }
            guard sessions.session(of: request) != nil else { return loginForm(nil) }
            return DashboardHTML.response(page)
        }
        router.post("/dashboard/login") { request, _ -> Response in
            var request = request
            let body = try await request.collectBody(upTo: 4096)
            let form = DashboardHTML.formFields(String(decoding: body.readableBytesView, as: UTF8.self))
            guard let token = form["token"], let holder = keyring.identify("Bearer \(token)"), holder.roles.contains(.operator) else {
                return loginForm("That is not an operator token.", status: .unauthorized)
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
    }

    private func loginForm(_ message: String?, status: HTTPResponse.Status = .ok) -> Response {
        DashboardHTML.response(DashboardHTML.login(service: service, message: message), status: status)
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
}
