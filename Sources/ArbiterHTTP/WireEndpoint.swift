public import HTTPTypes

/// One endpoint of the wire protocol, as `schemas/openapi.yaml` describes it.
///
/// The services register their routes from these values, and the contract test checks that this
/// list and the OpenAPI document name the same paths and methods.
public struct WireEndpoint: Hashable, Sendable, CustomStringConvertible {
    /// Which service serves the endpoint.
    public enum Service: String, Hashable, Sendable {
        case coordinator
        case participant
    }

    /// Which bearer token the endpoint needs.
    public enum Access: String, Hashable, Sendable {
        /// None: health and metrics, for load balancers and scrapers.
        case open
        /// A client token (the protocol secret in the single-secret mode).
        case clientToken
        /// The protocol secret: the coordinator at a participant, a participant's inquiry.
        case protocolToken
        /// An operator token.
        case operatorToken
        /// A client or an operator token (a transaction's state is for both).
        case clientOrOperatorToken
    }

    /// The service that serves the endpoint.
    public var service: Service
    /// The HTTP method.
    public var method: HTTPRequest.Method
    /// The path in OpenAPI form: `/v1/transactions/{id}`.
    public var path: String
    /// The token the endpoint needs.
    public var access: Access

    /// Describes an endpoint; `path` is in OpenAPI form.
    public init(_ service: Service, _ method: HTTPRequest.Method, _ path: String, access: Access) {
        self.service = service
        self.method = method
        self.path = path
        self.access = access
    }

    /// The path in Hummingbird's router form: `/v1/transactions/:id`.
    public var routerPath: String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { segment in
            segment.hasPrefix("{") && segment.hasSuffix("}") ? ":" + segment.dropFirst().dropLast() : segment
        }.joined(separator: "/")
    }

    public var description: String { "\(method.rawValue) \(path)" }

    // MARK: Coordinator

    /// `POST /v1/transactions`: run a transaction.
    public static let submit = WireEndpoint(.coordinator, .post, "/v1/transactions", access: .clientToken)
    /// `POST /v1/transaction-batch`: run many independent transactions, answered line by line.
    public static let submitBatch = WireEndpoint(.coordinator, .post, "/v1/transaction-batch", access: .clientToken)
    /// `GET /v1/transactions/{id}`: a transaction's state.
    public static let transaction = WireEndpoint(.coordinator, .get, "/v1/transactions/{id}", access: .clientOrOperatorToken)
    /// `GET /v1/transactions`: the operators' listing.
    public static let list = WireEndpoint(.coordinator, .get, "/v1/transactions", access: .operatorToken)
    /// `GET /v1/transactions/{id}/outcome`: the participants' in-doubt inquiry.
    public static let outcome = WireEndpoint(.coordinator, .get, "/v1/transactions/{id}/outcome", access: .protocolToken)
    /// `GET /healthz` on the coordinator.
    public static let coordinatorHealth = WireEndpoint(.coordinator, .get, "/healthz", access: .open)
    /// `GET /metrics`: Prometheus text.
    public static let metrics = WireEndpoint(.coordinator, .get, "/metrics", access: .open)

    // MARK: Participant

    /// `POST /v1/prepare`.
    public static let prepare = WireEndpoint(.participant, .post, "/v1/prepare", access: .protocolToken)
    /// `POST /v1/commit`.
    public static let commit = WireEndpoint(.participant, .post, "/v1/commit", access: .protocolToken)
    /// `POST /v1/abort`.
    public static let abort = WireEndpoint(.participant, .post, "/v1/abort", access: .protocolToken)
    /// `POST /v1/batch`: many messages in one request.
    public static let batch = WireEndpoint(.participant, .post, "/v1/batch", access: .protocolToken)
    /// `GET /healthz` on a participant.
    public static let participantHealth = WireEndpoint(.participant, .get, "/healthz", access: .open)
    /// `GET /metrics` on a participant: Prometheus text.
    public static let participantMetrics = WireEndpoint(.participant, .get, "/metrics", access: .open)

    /// `GET /readyz` on the coordinator: 503 while the decision log cannot be written.
    public static let coordinatorReady = WireEndpoint(.coordinator, .get, "/readyz", access: .open)
    /// `GET /readyz` on a participant: 503 while its database cannot be written.
    public static let participantReady = WireEndpoint(.participant, .get, "/readyz", access: .open)

    // MARK: Participant operators

    /// `GET /v1/operator/in-doubt`: the transactions prepared here and waiting for their decision.
    public static let operatorInDoubt = WireEndpoint(.participant, .get, "/v1/operator/in-doubt", access: .operatorToken)
    /// `GET /v1/operator/transactions/{txid}`: one transaction as this participant holds it.
    public static let operatorTransaction = WireEndpoint(.participant, .get, "/v1/operator/transactions/{txid}", access: .operatorToken)
    /// `POST /v1/operator/transactions/{txid}/decide`: an operator's heuristic decision.
    public static let operatorDecide = WireEndpoint(.participant, .post, "/v1/operator/transactions/{txid}/decide", access: .operatorToken)
    /// `GET /v1/operator/audit`: the operators' actions at this participant, newest first.
    public static let participantAudit = WireEndpoint(.participant, .get, "/v1/operator/audit", access: .operatorToken)
    /// `POST /v1/operator/transactions/{id}/retry`: an operator resends phase 2 now (audited).
    public static let operatorRetry = WireEndpoint(.coordinator, .post, "/v1/operator/transactions/{id}/retry", access: .operatorToken)
    /// `GET /v1/operator/stuck`: transactions not ended past a threshold, with who owes what.
    public static let operatorStuck = WireEndpoint(.coordinator, .get, "/v1/operator/stuck", access: .operatorToken)
    /// `GET /v1/operator/audit`: the coordinator's operator audit trail.
    public static let operatorAudit = WireEndpoint(.coordinator, .get, "/v1/operator/audit", access: .operatorToken)

    /// Every endpoint of the coordinator.
    public static let coordinatorEndpoints: [WireEndpoint] = [
        submit, submitBatch, transaction, list, outcome, coordinatorHealth, coordinatorReady, metrics,
        operatorRetry, operatorStuck, operatorAudit,
    ]
    /// Every endpoint of a participant; the operator ones only when it has operator tokens.
    public static let participantEndpoints: [WireEndpoint] = [
        prepare, commit, abort, batch, participantHealth, participantReady, participantMetrics,
        operatorInDoubt, operatorTransaction, operatorDecide, operatorAudit,
    ]
    /// Every endpoint of the protocol.
    public static let all: [WireEndpoint] = coordinatorEndpoints + participantEndpoints
}
