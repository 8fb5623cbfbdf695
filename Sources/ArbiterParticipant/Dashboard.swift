import ArbiterCore
import ArbiterHTTP
import ArbiterStorage
import Foundation
import Hummingbird

/// `GET /dashboard/api/summary` at a participant: everything its page shows, in one poll.
struct ParticipantDashboardSummary: Encodable, Sendable {
    /// A transaction in doubt, as the page lists it.
    struct InDoubt: Encodable, Sendable {
        var txid: String
        var coordinator: String?
        /// When it was prepared here (RFC 3339, UTC).
        var preparedAt: String?
        /// How long it has been in doubt, by this node's clock.
        var ageMs: Int64?
        /// The start of the payload's JSON text, at most ``ParticipantDashboard/payloadSummaryMax``
        /// characters (then `…`).
        var payload: String?
        var locks: [String]
        /// What the last inquiry to its coordinator brought, if one ended since the node started.
        var lastInquiry: Inquiry?
    }

    /// The last inquiry about a transaction: the coordinator's answer, or why there was none.
    struct Inquiry: Encodable, Sendable {
        var at: String
        var ageMs: Int64
        var coordinator: String
        /// `pending`: the coordinator has not decided. (An answer that decides ends the doubt, and
        /// the record with it.)
        var answer: String?
        /// Why the inquiry failed.
        var error: String?
    }

    /// The oldest transactions in doubt, oldest first (at most ``ParticipantDashboard/inDoubtShownMax``).
    var inDoubt: [InDoubt]
    /// How many are in doubt in all.
    var inDoubtCount: Int
    /// The latest operator actions, newest first.
    var audit: [OperatorAuditEntry]
    /// The session's CSRF token, for the page's decisions; absent for a bearer token.
    var csrf: String?
}

/// The participant's dashboard: the login routes (``DashboardLogin``), the page, and the summary it
/// polls. The page decides through `POST /v1/operator/transactions/{txid}/decide`, with the session
/// cookie and its CSRF token.
struct ParticipantDashboard: Sendable {
    let engine: ParticipantEngine
    let store: any ParticipantBackend
    let keyring: Keyring
    let sessions: DashboardSessions

    /// Transactions in doubt listed at most.
    static var inDoubtShownMax: Int { 100 }
    /// Characters of a payload shown at most.
    static var payloadSummaryMax: Int { 160 }
    /// Operator actions listed.
    static var auditShown: Int { 20 }

    /// Adds `GET /dashboard`, `POST /dashboard/login`, `POST /dashboard/logout`, and
    /// `GET /dashboard/api/summary` (operator token or session) to `router`.
    func add(to router: Router<BasicRequestContext>) {
        DashboardLogin(keyring: keyring, sessions: sessions, service: "Arbiter participant", page: ParticipantDashboardPage.page)
            .add(to: router)
        router.group("/dashboard/api")
            .add(middleware: OperatorMiddleware(keyring: keyring, sessions: sessions))
            .get("/summary") { request, _ in try DashboardHTML.json(try await summary(request)) }
    }

    func summary(_ request: Request) async throws -> ParticipantDashboardSummary {
        let now = Date()
        let prepared = try await store.prepared()
        var inDoubt: [ParticipantDashboardSummary.InDoubt] = []
        for transaction in prepared.prefix(Self.inDoubtShownMax) {
            inDoubt.append(.init(
                txid: transaction.txid.rawValue,
                coordinator: transaction.coordinator?.rawValue,
                preparedAt: transaction.preparedAt.map(Self.timestamp),
                ageMs: transaction.preparedAt.map { Self.milliseconds(now.timeIntervalSince($0)) },
                payload: transaction.payload.map(Self.payloadSummary),
                locks: try await store.locks(of: transaction.txid),
                lastInquiry: engine.lastInquiry(of: transaction.txid).map { record in
                    let answer: String?
                    let error: String?
                    switch record.result {
                    case .answered(let inquiryAnswer): (answer, error) = (inquiryAnswer.rawValue, nil)
                    case .failed(let reason): (answer, error) = (nil, reason)
                    }
                    return .init(at: Self.timestamp(record.at), ageMs: Self.milliseconds(now.timeIntervalSince(record.at)),
                                 coordinator: record.coordinator.rawValue, answer: answer, error: error)
                }))
        }
        return ParticipantDashboardSummary(
            inDoubt: inDoubt,
            inDoubtCount: prepared.count,
            audit: try await store.operatorActions(limit: Self.auditShown, before: nil).map(OperatorAuditEntry.init),
            csrf: sessions.session(of: request)?.csrf)
    }

    /// The payload's text, cut after ``payloadSummaryMax`` characters (only its start is read: a
    /// payload can be large, and the page polls).
    static func payloadSummary(_ payload: Payload) -> String {
        let head = payload.bytes.prefix(payloadSummaryMax * 4)
        let text = String(decoding: head, as: UTF8.self)
        if head.count == payload.bytes.count && text.count <= payloadSummaryMax { return text }
        return String(text.prefix(payloadSummaryMax)) + "…"
    }

    private static func timestamp(_ date: Date) -> String {
        WireTimestamp.string(millisecondsSinceEpoch: Int64((date.timeIntervalSince1970 * 1000).rounded(.down)))
    }

    private static func milliseconds(_ interval: TimeInterval) -> Int64 {
        max(0, Int64((interval * 1000).rounded(.down)))
    }
}
