public import ArbiterPostgres
public import ArbiterCore
public import ArbiterHTTP
public import Logging

/// How a coordinator runs. Every default is written here.
public struct CoordinatorOptions: Sendable {
    /// Where the decision log lives (`DIR/coordinator.sqlite`).
    public var dataDirectory: String
    /// The address to listen on. Default 127.0.0.1: exposing a coordinator is a deliberate act.
    public var host: String
    /// The port to listen on; 0 lets the system choose (see ``CoordinatorService/boundPort``).
    public var port: Int
    /// The URL participants use to reach this coordinator for inquiries; default `http://HOST:PORT`.
    public var advertisedURL: String?
    /// This coordinator's name: the prefix of the ids it makes, so ids are unique across
    /// coordinators. Default "arbiter".
    public var name: String
    /// The protocol secret: presented to participants (unless the registry gives one of their
    /// own) and accepted from them on the inquiry route. Without ``clientTokens`` it is also the
    /// clients' credential (the single-secret mode).
    public var secret: BearerSecret
    /// The participants this coordinator talks to, and their credentials. A branch naming any
    /// other is refused before anything is sent.
    public var participants: ParticipantRegistry
    /// The clients' tokens (submit and read transactions), each with a name for the logs; `nil`:
    /// clients use ``secret``. With client tokens, ``secret`` cannot submit.
    public var clientTokens: [NamedToken]?
    /// The operators' tokens (listing transactions); empty: the listing is refused.
    public var operatorTokens: [NamedToken]
    /// The protocol's timeouts (prepare deadline, phase-2 resend backoff).
    public var protocolConfig: CoordinatorConfig
    /// Limits on requests (body size, branches, id length, payload size).
    public var limits: WireLimits
    /// How long a client's submit may wait beyond its transaction's prepare deadline before it is
    /// answered 504 (the transaction goes on). Default 5 s.
    public var clientWaitGrace: Duration
    /// Messages to one participant in one request, at most. Default 256.
    public var batchSizeMax: Int
    /// Requests open to one participant at once, at most. Default 4. The loop hands the
    /// transport one batch per participant per round; a batch beyond the cap waits for a request
    /// to return and then goes out with everything else that waits.
    public var requestsInFlightMax: Int
    public var logger: Logger
    /// TLS: with a certificate and key the coordinator serves https, and presents them as its
    /// client certificate to participants; the CA is what participants' (and, when required,
    /// clients') certificates must chain to. Default `nil`: plain http, and https participants
    /// checked against the system's trust roots.
    public var tls: TLSSettings?
    /// The cap on open connections and the idle and request-read timeouts of the HTTP server.
    public var connectionLimits: ConnectionLimits
    /// Where decisions are kept when this coordinator is one of a cluster: a PostgreSQL database
    /// the coordinators share (each with its own unique ``name``). `nil` (the default): the SQLite
    /// log in ``dataDirectory``, this coordinator's alone. The data directory keeps the operators'
    /// audit trail either way.
    public var cluster: ClusterStoreOptions?

    public init(
        dataDirectory: String,
        host: String = "127.0.0.1",
        port: Int = 7000,
        advertisedURL: String? = nil,
        name: String = "arbiter",
        secret: BearerSecret,
        participants: ParticipantRegistry,
        clientTokens: [NamedToken]? = nil,
        operatorTokens: [NamedToken] = [],
        protocolConfig: CoordinatorConfig = CoordinatorConfig(),
        limits: WireLimits = .default,
        clientWaitGrace: Duration = .seconds(5),
        batchSizeMax: Int = 256,
        requestsInFlightMax: Int = 4,
        logger: Logger = Logger(label: "arbiter.coordinator"),
        tls: TLSSettings? = nil,
        connectionLimits: ConnectionLimits = ConnectionLimits(),
        cluster: ClusterStoreOptions? = nil
    ) {
        self.dataDirectory = dataDirectory
        self.host = host
        self.port = port
        self.advertisedURL = advertisedURL
        self.name = name
        self.secret = secret
        self.participants = participants
        self.clientTokens = clientTokens
        self.operatorTokens = operatorTokens
        self.protocolConfig = protocolConfig
        self.limits = limits
        self.clientWaitGrace = clientWaitGrace
        self.batchSizeMax = batchSizeMax
        self.requestsInFlightMax = requestsInFlightMax
        self.logger = logger
        self.tls = tls
        self.connectionLimits = connectionLimits
        self.cluster = cluster
    }
}

/// A coordinator of a cluster: the shared PostgreSQL store, and its lease.
public struct ClusterStoreOptions: Sendable {
    public var location: PostgresLocation
    /// How long this coordinator's lease lasts after each renewal (renewed every third of it).
    /// When it dies, the others take its unfinished transactions over about this long after its
    /// last renewal. Default 10 s.
    public var lease: Duration
    /// How often this coordinator looks for the unfinished transactions of coordinators whose
    /// lease expired. Default 2 s.
    public var sweepInterval: Duration

    public init(location: PostgresLocation, lease: Duration = .seconds(10), sweepInterval: Duration = .seconds(2)) {
        self.location = location
        self.lease = lease
        self.sweepInterval = sweepInterval
    }
}
