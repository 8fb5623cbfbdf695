import ArbiterCore
import ArbiterHTTP
import ArbiterStorage
import Foundation
import Hummingbird
import Synchronization

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
    /// `POST /dashboard/logout` (see ``DashboardLogin``), and `GET /dashboard/api/summary` behind
    /// the operator middleware.
    func dashboardRoutes(_ router: Router<BasicRequestContext>, _ operatorRoutes: RouterGroup<BasicRequestContext>) {
        DashboardLogin(keyring: keyring, sessions: sessions, service: "Arbiter coordinator", page: DashboardPage.page).add(to: router)
        operatorRoutes.get("/dashboard/api/summary") { request, _ in try await summary(request) }
    }

    private func summary(_ request: Request) async throws -> DashboardSummary {
        let counts = try await storage { try await engine.views.openCounts() }
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
        let csrf = sessions.session(of: request)?.csrf
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
}
