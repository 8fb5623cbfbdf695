public import ArbiterCore
public import ArbiterHTTP
public import ArbiterStorage
public import Logging

/// How a ``ParticipantNode`` runs: where it listens, where it keeps its database, its secrets,
/// timeouts and limits. Every setting but the port, the data directory and the secret has a
/// documented default.
public struct ParticipantOptions: Sendable {
    /// The address to listen on. Default `127.0.0.1` (loopback only); use `0.0.0.0` to accept
    /// connections from other machines.
    public var host: String
    /// The TCP port to listen on; `0` lets the operating system choose one, which
    /// ``ParticipantNode/waitUntilListening()`` then returns.
    public var port: Int
    /// The directory of the participant's database. Created (with its parents) when missing.
    public var dataDirectory: String
    /// The database file's name inside ``dataDirectory``. Default `participant.sqlite`.
    public var databaseFileName: String
    /// The protocol secret: the coordinator presents it as `Authorization: Bearer <secret>`, and
    /// the node presents it on its inquiries. Without ``clientTokens``, the routes the service
    /// adds need it too.
    public var secret: BearerSecret
    /// The tokens the routes the service adds accept (its own API: the bank's accounts), each
    /// with a name for the logs. Default `nil`: those routes take ``secret``. With client tokens,
    /// ``secret`` no longer opens them, and no client token opens the protocol endpoints.
    public var clientTokens: [NamedToken]?
    /// The operators' tokens for `/v1/operator/...` (in-doubt list, transaction status, heuristic
    /// decisions, the audit trail); a token's name is recorded as who acted. Default empty: the
    /// operator endpoints are not served.
    public var operatorTokens: [NamedToken]
    /// The coordinators this participant works for, as base URLs (`http://host:port`). A `prepare`
    /// naming another coordinator is refused (400): the coordinator URL is where in-doubt
    /// inquiries go, so it must not be whatever a request says. Default `nil`: any coordinator.
    public var coordinators: [String]?
    /// The protocol's timeouts: first inquiry after prepare (10 s), inquiry backoff (1 s doubling to
    /// 30 s, 20 % jitter), retention of ended transactions in the store (1 hour) and in memory
    /// (30 s). See `ParticipantConfig`.
    public var protocolConfig: ParticipantConfig
    /// Size and count limits on what the node receives (body 1 MiB, batch body 16 MiB, payload
    /// 64 KiB, 1024 batch messages, URL 2048 bytes). See `WireLimits`.
    public var limits: WireLimits
    /// How long a request waits for its answer (the prepared or committed record to be durable)
    /// before it gets `503 unavailable`; the coordinator then retries, and the work goes on.
    /// Default 10 s.
    public var replyTimeout: Duration
    /// The deadline of one in-doubt inquiry to a coordinator. Default 5 s.
    public var inquiryTimeout: Duration
    /// The most inquiries in flight at once (after a restart with many transactions in doubt).
    /// Default 64.
    public var inquiryConcurrencyMax: Int
    /// The most messages waiting for answers; beyond it new ones get 503 at once. Default 65 536.
    public var pendingReplyCountMax: Int
    /// How writes that failed (a resource's `apply` that threw, a disk error) are retried.
    /// Default 100 ms doubling to 10 s, 20 % jitter.
    public var storageRetry: Backoff
    /// The HTTP client of the in-doubt inquiries. See `HTTPClientSettings`.
    public var httpClient: HTTPClientSettings
    /// The database writer's settings (batch size, queue length, busy timeout).
    /// See `StoreWriter.Options`. Default: its defaults, logging to ``logger``.
    public var storage: StoreWriter.Options
    /// How often `/metrics` recounts the committed and aborted transactions the store retains.
    /// Counting them reads an index entry per retained row (an hour of traffic by default, about
    /// 0.05 s per million), so a scrape reuses the last count until it is this old; transactions in
    /// doubt and locks are counted at every scrape. Default 60 s; `.zero` counts at every scrape.
    public var endedCountInterval: Duration
    /// Seeds the jitter of retries. Default `nil`: a random seed.
    public var seed: UInt64?
    /// Where the node logs. Default label `arbiter.participant`.
    public var logger: Logger
    /// TLS: with a certificate and key the node serves https, and presents them as its client
    /// certificate on inquiries; the CA is what the coordinator's certificates (as a server, and
    /// as a client when ``TLSSettings/requiresClientCertificate``) must chain to. Default `nil`:
    /// plain http.
    public var tls: TLSSettings?
    /// The cap on open connections and the idle and request-read timeouts of the HTTP server.
    public var connectionLimits: ConnectionLimits

    /// Makes options; every argument but `port`, `dataDirectory` and `secret` defaults to the
    /// documented default.
    public init(
        host: String = "127.0.0.1",
        port: Int,
        dataDirectory: String,
        databaseFileName: String = "participant.sqlite",
        secret: BearerSecret,
        clientTokens: [NamedToken]? = nil,
        operatorTokens: [NamedToken] = [],
        coordinators: [String]? = nil,
        protocolConfig: ParticipantConfig = ParticipantConfig(),
        limits: WireLimits = .default,
        replyTimeout: Duration = .seconds(10),
        inquiryTimeout: Duration = .seconds(5),
        inquiryConcurrencyMax: Int = 64,
        pendingReplyCountMax: Int = 65_536,
        storageRetry: Backoff = Backoff(initial: .milliseconds(100), max: .seconds(10)),
        httpClient: HTTPClientSettings = HTTPClientSettings(),
        storage: StoreWriter.Options? = nil,
        endedCountInterval: Duration = .seconds(60),
        seed: UInt64? = nil,
        logger: Logger = Logger(label: "arbiter.participant"),
        tls: TLSSettings? = nil,
        connectionLimits: ConnectionLimits = ConnectionLimits()
    ) {
        self.host = host
        self.port = port
        self.dataDirectory = dataDirectory
        self.databaseFileName = databaseFileName
        self.secret = secret
        self.clientTokens = clientTokens
        self.operatorTokens = operatorTokens
        self.coordinators = coordinators
        self.protocolConfig = protocolConfig
        self.limits = limits
        self.replyTimeout = replyTimeout
        self.inquiryTimeout = inquiryTimeout
        self.inquiryConcurrencyMax = inquiryConcurrencyMax
        self.pendingReplyCountMax = pendingReplyCountMax
        self.storageRetry = storageRetry
        self.httpClient = httpClient
        self.storage = storage ?? StoreWriter.Options(logger: logger)
        self.endedCountInterval = endedCountInterval
        self.seed = seed
        self.logger = logger
        self.tls = tls
        self.connectionLimits = connectionLimits
    }

    /// The problem with the SQLite database's options, if there is one.
    func databaseProblem() -> String? {
        if dataDirectory.isEmpty { return "dataDirectory is empty; name the directory of the participant's database" }
        if databaseFileName.isEmpty || databaseFileName.contains("/") {
            return "databaseFileName \(databaseFileName.debugDescription) must be a plain file name"
        }
        return nil
    }

    /// The problem with these options (the database's aside), if there is one.
    func problem() -> String? {
        if !(0...65_535).contains(port) { return "port \(port) is not in 0...65535" }
        if host.isEmpty { return "host is empty; use 127.0.0.1 (loopback) or 0.0.0.0 (all interfaces)" }
        if replyTimeout <= .zero || inquiryTimeout <= .zero { return "replyTimeout and inquiryTimeout must be positive" }
        if inquiryConcurrencyMax < 1 || pendingReplyCountMax < 1 {
            return "inquiryConcurrencyMax and pendingReplyCountMax must each be at least 1"
        }
        if let problem = tls?.problem() ?? connectionLimits.problem() { return problem }
        return nil
    }
}
