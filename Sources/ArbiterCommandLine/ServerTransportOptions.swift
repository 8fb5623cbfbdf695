public import ArbiterHTTP
public import ArgumentParser

/// The transport flags every Arbiter server takes (`arbiter coordinator`, `bank-node`): TLS and
/// mutual TLS, the connection cap and the connection timeouts. Add them with
/// `@OptionGroup var transport: ServerTransportOptions`.
public struct ServerTransportOptions: ParsableArguments, Sendable {
    @Option(help: "Certificate chain (PEM) to serve https with; also this service's client certificate toward the services it calls.")
    public var tlsCert: String?

    @Option(help: "Private key (PEM) of --tls-cert.")
    public var tlsKey: String?

    @Option(help: "CA certificates (PEM) that peers' certificates must chain to: the services called, and clients that present a certificate.")
    public var tlsCa: String?

    @Flag(help: "Require every client to present a certificate that chains to --tls-ca (mutual TLS); needs --tls-cert, --tls-key and --tls-ca.")
    public var tlsRequireClientCert = false

    @Option(help: "Most connections open at once; more are closed as soon as accepted. Lowered to fit the open-files limit (minus a reserve of a quarter, at least 64).")
    public var connectionsMax: Int = 1024

    @Option(help: "Milliseconds a connection may stay open with no request under way before it is closed.")
    public var idleTimeoutMs: Int = 75_000

    @Option(help: "Milliseconds a request (head and body) may take to arrive from its first byte before the connection is closed.")
    public var requestReadTimeoutMs: Int = 10_000

    public init() {}

    /// The TLS settings the flags give, `nil` when no TLS flag is given.
    public var tlsSettings: TLSSettings? {
        guard tlsCert != nil || tlsKey != nil || tlsCa != nil || tlsRequireClientCert else { return nil }
        return TLSSettings(certificateFile: tlsCert, keyFile: tlsKey, caFile: tlsCa, requiresClientCertificate: tlsRequireClientCert)
    }

    /// The connection limits the flags give.
    public var connectionLimits: ConnectionLimits {
        ConnectionLimits(connectionsMax: connectionsMax, idleTimeout: .milliseconds(idleTimeoutMs), requestReadTimeout: .milliseconds(requestReadTimeoutMs))
    }

    public func validate() throws {
        if let problem = tlsSettings?.problem() ?? connectionLimits.problem() { throw ValidationError(problem) }
    }
}
