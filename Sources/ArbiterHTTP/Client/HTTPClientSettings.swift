public import AsyncHTTPClient
public import NIOCore

/// The shared AsyncHTTPClient setup for protocol traffic (coordinator → participants, participant
/// → coordinator, client → coordinator).
///
/// Connections are kept alive and pooled. The pool's per-host limit is raised well above
/// AsyncHTTPClient's default of 8, which would otherwise queue a busy coordinator's messages to one
/// participant behind 8 connections. Redirects are refused: a protocol message must reach the URL
/// it names, with its bearer token, or fail. Per-request deadlines are given per call.
public struct HTTPClientSettings: Hashable, Sendable {
    /// The most HTTP/1 connections kept to one host (a soft limit). Default 256.
    public var connectionsPerHostMax: Int
    /// How long connecting may take. Default 1 s (loopback and LAN peers answer in well under that).
    public var connectTimeout: Duration
    /// How long an idle pooled connection is kept. Default 60 s.
    public var idleTimeout: Duration
    /// Whether AsyncHTTPClient itself retries a failed connection attempt until the request's
    /// deadline. Default `false`: a refused connection fails the call at once, because the
    /// protocol machines and `ArbiterClient` own retries and backoff, and a participant that is
    /// down should be noticed now rather than at the deadline.
    public var retriesConnectionEstablishment: Bool

    /// Makes settings; every argument defaults to the documented default.
    public init(
        connectionsPerHostMax: Int = 256,
        connectTimeout: Duration = .seconds(1),
        idleTimeout: Duration = .seconds(60),
        retriesConnectionEstablishment: Bool = false
    ) {
        precondition(connectionsPerHostMax > 0, "connectionsPerHostMax must be positive")
        self.connectionsPerHostMax = connectionsPerHostMax
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
        self.retriesConnectionEstablishment = retriesConnectionEstablishment
    }

    /// The AsyncHTTPClient configuration these settings stand for.
    public func configuration() -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: TimeAmount(connectTimeout), read: nil),
            connectionPool: .init(
                idleTimeout: TimeAmount(idleTimeout),
                concurrentHTTP1ConnectionsPerHostSoftLimit: connectionsPerHostMax
            ),
            decompression: .disabled
        )
        configuration.httpVersion = .automatic
        configuration.connectionPool.retryConnectionEstablishment = retriesConnectionEstablishment
        // Arbiter sets each request's `traceparent` itself (see WireTracing): one per transaction,
        // per message in a batch. AsyncHTTPClient's own tracing would add a second header naming
        // whatever span the sending task happens to carry, and a span per HTTP exchange that
        // mixes many transactions.
        configuration.tracing.tracer = nil
        return configuration
    }

    /// A new client with these settings. Shut it down (`try await client.shutdown()`) when done.
    public func makeClient(eventLoopGroup: any EventLoopGroup = HTTPClient.defaultEventLoopGroup) -> HTTPClient {
        HTTPClient(eventLoopGroup: eventLoopGroup, configuration: configuration())
    }
}

extension TimeAmount {
    /// The same span in NIO's nanoseconds, saturating rather than overflowing.
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow {
            self = .nanoseconds(seconds < 0 ? .min : .max)
            return
        }
        self = .nanoseconds(scaled.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue)
    }
}
