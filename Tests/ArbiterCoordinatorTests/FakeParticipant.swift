import ArbiterCore
import ArbiterHTTP
import Hummingbird
import Synchronization

/// A scripted participant that speaks the wire protocol: enough to drive a real coordinator over
/// HTTP through every path, and to see what it was told.
final class FakeParticipant: Sendable {
    enum Behaviour: Sendable {
        case yes
        case no(String)
        case readOnly
        /// Never answers the prepare (a stalled participant): the coordinator's deadline must act.
        case hang
        /// Answers `yes` after a while (holds the link's one open request, so others queue behind it).
        case slow(Duration)
        /// Answers `yes` once the test calls ``release()``.
        case held
    }

    /// The trace context a message arrived with: its request's `traceparent` header and its own
    /// `traceparent` member.
    struct Traced: Sendable, Hashable {
        var message: String
        var header: String?
        var member: String?
        /// Whether the request carried this message alone (a single-message endpoint).
        var single: Bool
    }

    struct Seen: Sendable {
        var prepared: [TxID] = []
        var onePhase: [TxID] = []
        var committed: [TxID] = []
        var aborted: [TxID] = []
        /// Each request's messages, as "prepare ID", "commit ID", "abort ID", in arrival order.
        var requests: [[String]] = []
        var messages = 0
        var traced: [Traced] = []
    }

    private let seen = Mutex(Seen())
    private let behaviour: Mutex<@Sendable (TxID) -> Behaviour>
    /// While false, commits and aborts get 503 (a participant down during phase 2).
    private let acceptsDecisions = Mutex(true)
    /// Whether ``Behaviour/held`` prepares may answer.
    private let released = Mutex(false)

    /// The only credential this participant accepts.
    private let secret: BearerSecret

    init(secret: BearerSecret = TestSecrets.protocolSecret, _ behaviour: @escaping @Sendable (TxID) -> Behaviour = { _ in .yes }) {
        self.secret = secret
        self.behaviour = Mutex(behaviour)
    }

    var state: Seen { seen.withLock { $0 } }
    func setAcceptsDecisions(_ accepts: Bool) { acceptsDecisions.withLock { $0 = accepts } }
    /// Lets the held prepares vote.
    func release() { released.withLock { $0 = true } }
    func setBehaviour(_ behaviour: @escaping @Sendable (TxID) -> Behaviour) { self.behaviour.withLock { $0 = behaviour } }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: APIErrorMiddleware())
        let routes = router.group().add(middleware: BearerTokenMiddleware(secret: secret))
        routes.post("/v1/prepare") { request, _ in
            let body = try await request.decodeWire(PrepareBody.self, bodySizeMax: 1 << 20)
            let message = CoordinatorMessage.prepare(try body.validated(limits: .default))
            self.recordRequest([message])
            self.recordTrace(message, header: request.headers[TraceParent.header], member: body.traceparent, single: true)
            let reply = try await self.answer(message)
            return try WireResponse.json(PrepareReply(reply)!)
        }
        routes.post("/v1/commit") { request, _ in
            let body = try await request.decodeWire(DecisionBody.self, bodySizeMax: 1 << 20)
            let message = CoordinatorMessage.commit(try body.validated())
            self.recordRequest([message])
            self.recordTrace(message, header: request.headers[TraceParent.header], member: body.traceparent, single: true)
            return try WireResponse.json(AcknowledgeReply(try await self.answer(message))!)
        }
        routes.post("/v1/abort") { request, _ in
            let body = try await request.decodeWire(DecisionBody.self, bodySizeMax: 1 << 20)
            let message = CoordinatorMessage.abort(try body.validated())
            self.recordRequest([message])
            self.recordTrace(message, header: request.headers[TraceParent.header], member: body.traceparent, single: true)
            return try WireResponse.json(AcknowledgeReply(try await self.answer(message))!)
        }
        routes.post("/v1/batch") { request, _ in
            let body = try await request.decodeWire(BatchRequest.self, bodySizeMax: 16 << 20)
            let messages = try body.validated(limits: .default)
            self.recordRequest(messages)
            for (message, wire) in zip(messages, body.messages) {
                self.recordTrace(message, header: request.headers[TraceParent.header], member: wire.traceparent, single: false)
            }
            let replies = try await withThrowingTaskGroup(of: (Int, BatchReply).self) { group in
                for (index, message) in messages.enumerated() {
                    group.addTask {
                        do {
                            return (index, BatchReply(answering: message, with: try await self.answer(message)))
                        } catch let error as APIError {
                            return (index, BatchReply(answering: message, failure: error))
                        }
                    }
                }
                var replies = [BatchReply?](repeating: nil, count: messages.count)
                for try await (index, reply) in group { replies[index] = reply }
                return replies.map { $0! }
            }
            return try WireResponse.json(BatchResponse(replies: replies))
        }
        return router
    }

    /// Notes one request's messages in ``Seen/requests``.
    private func recordRequest(_ messages: [CoordinatorMessage]) {
        seen.withLock { $0.requests.append(messages.map(Self.describe)) }
    }

    private func recordTrace(_ message: CoordinatorMessage, header: String?, member: String?, single: Bool) {
        seen.withLock { $0.traced.append(Traced(message: Self.describe(message), header: header, member: member, single: single)) }
    }

    private static func describe(_ message: CoordinatorMessage) -> String {
        switch message {
        case .prepare(let request): "prepare \(request.txid)"
        case .commit(let txid): "commit \(txid)"
        case .abort(let txid): "abort \(txid)"
        case .outcome(let txid, _): "outcome \(txid)"
        }
    }

    private func answer(_ message: CoordinatorMessage) async throws -> ParticipantMessage {
        seen.withLock { $0.messages += 1 }
        switch message {
        case .prepare(let request):
            let behaviour = self.behaviour.withLock { $0 }(request.txid)
            switch behaviour {
            case .hang:
                try await Task.sleep(for: .seconds(3600))
                throw APIError.unavailable("hung")
            case .slow(let delay):
                try await Task.sleep(for: delay)
                seen.withLock { $0.prepared.append(request.txid) }
                return .vote(request.txid, .yes)
            case .held:
                while !released.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
                seen.withLock { $0.prepared.append(request.txid) }
                return .vote(request.txid, .yes)
            case .no(let reason):
                seen.withLock { $0.aborted.append(request.txid) }
                return request.onePhase ? .onePhaseOutcome(request.txid, .aborted) : .vote(request.txid, .no(reason: reason))
            case .readOnly:
                return request.onePhase ? .onePhaseOutcome(request.txid, .committed) : .vote(request.txid, .readOnly)
            case .yes:
                if request.onePhase {
                    seen.withLock { $0.onePhase.append(request.txid); $0.committed.append(request.txid) }
                    return .onePhaseOutcome(request.txid, .committed)
                }
                seen.withLock { $0.prepared.append(request.txid) }
                return .vote(request.txid, .yes)
            }
        case .commit(let txid):
            guard acceptsDecisions.withLock({ $0 }) else { throw APIError.unavailable("down for maintenance") }
            seen.withLock { if !$0.committed.contains(txid) { $0.committed.append(txid) } }
            return .acknowledge(txid, .committed)
        case .abort(let txid):
            guard acceptsDecisions.withLock({ $0 }) else { throw APIError.unavailable("down for maintenance") }
            seen.withLock { if !$0.aborted.contains(txid) { $0.aborted.append(txid) } }
            return .acknowledge(txid, .aborted)
        case .outcome:
            throw APIError.invalidValue("type", "not a participant message")
        }
    }
}

enum TestSecrets {
    static let protocolSecret = try! BearerSecret("protocol-s3cret")
    static let operatorSecret = try! BearerSecret("operator-s3cret")
    /// The operator secret's text, for the dashboard's login form.
    static let operatorSecretText = "operator-s3cret"
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
