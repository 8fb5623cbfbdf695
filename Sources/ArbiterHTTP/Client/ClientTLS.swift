public import AsyncHTTPClient
public import NIOCore
public import NIOSSL

/// Why a TLS setup could not be made: a PEM file that cannot be read, or settings that do not
/// go together.
public struct TLSSetupError: Error, CustomStringConvertible {
    /// What is wrong and what to do about it.
    public var message: String
    /// The underlying error, when there is one.
    public var cause: (any Error)?

    public init(_ message: String, cause: (any Error)? = nil) {
        self.message = message
        self.cause = cause
    }

    public var description: String {
        cause.map { "\(message): \($0)" } ?? message
    }
}

/// A service's TLS files (PEM): its certificate chain and key, the CA its peers' certificates
/// must chain to, and whether clients must present a certificate.
///
/// One set of files serves both directions: the certificate and key are what the service
/// presents as a server and, when it calls other services (a coordinator's protocol requests, a
/// participant's inquiries), as a client; the CA is what it trusts in the certificates of both its
/// servers and its clients.
public struct TLSSettings: Sendable, Hashable {
    /// The certificate chain (PEM, leaf first). With ``keyFile``, the service serves https.
    public var certificateFile: String?
    /// The private key of ``certificateFile`` (PEM).
    public var keyFile: String?
    /// The CA certificates (PEM) that peers' certificates must chain to. Without it, the
    /// services called are checked against the system's trust roots and clients' certificates
    /// are not asked for.
    public var caFile: String?
    /// Whether a client must present a certificate that chains to ``caFile`` (mutual TLS); the
    /// handshake fails otherwise, before any request is read.
    public var requiresClientCertificate: Bool

    public init(certificateFile: String? = nil, keyFile: String? = nil, caFile: String? = nil, requiresClientCertificate: Bool = false) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.caFile = caFile
        self.requiresClientCertificate = requiresClientCertificate
    }

    /// Whether the service serves https.
    public var servesTLS: Bool { certificateFile != nil }

    /// `https` when the service serves TLS, `http` otherwise.
    public var scheme: String { servesTLS ? "https" : "http" }

    /// The problem with these settings, if there is one, phrased in terms of the command-line
    /// flags that set them.
    public func problem() -> String? {
        if (certificateFile == nil) != (keyFile == nil) { return "--tls-cert and --tls-key go together: give both or neither" }
        if requiresClientCertificate && caFile == nil { return "--tls-require-client-cert needs --tls-ca (the CA client certificates must chain to)" }
        if requiresClientCertificate && certificateFile == nil { return "--tls-require-client-cert needs --tls-cert and --tls-key (the server must serve TLS)" }
        return nil
    }

    /// The server side: this service's certificate and key, and when a CA is given, the
    /// verification of client certificates (required, or checked when presented).
    public func serverConfiguration() throws(TLSSetupError) -> TLSConfiguration {
        if let problem = problem() { throw TLSSetupError(problem) }
        guard let certificateFile, let keyFile else { throw TLSSetupError("serving TLS needs a certificate and a key") }
        let chain = try Self.certificates(certificateFile, what: "--tls-cert")
        let key = try Self.privateKey(keyFile)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        if let caFile {
            configuration.trustRoots = .certificates(try Self.certificates(caFile, what: "--tls-ca"))
            // Client certificates are checked against the CA, not against a host name: clients
            // are not reached at an address the server could compare.
            configuration.certificateVerification = requiresClientCertificate ? .noHostnameVerification : .optionalVerification
            configuration.sendCANameList = true
        }
        return configuration
    }

    /// The client side: the CA servers must chain to (the system's roots without one), and this
    /// service's certificate and key as its client identity when given.
    public func clientTLS() throws(TLSSetupError) -> ClientTLS {
        if let problem = problem() { throw TLSSetupError(problem) }
        return try ClientTLS(caFile: caFile, certificateFile: certificateFile, keyFile: keyFile)
    }

    static func certificates(_ path: String, what: String) throws(TLSSetupError) -> [NIOSSLCertificate] {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw TLSSetupError("\(what) \(path): cannot read PEM certificates", cause: error)
        }
        guard !certificates.isEmpty else { throw TLSSetupError("\(what) \(path) holds no PEM certificate") }
        return certificates
    }

    static func privateKey(_ path: String) throws(TLSSetupError) -> NIOSSLPrivateKey {
        do {
            return try NIOSSLPrivateKey(file: path, format: .pem)
        } catch {
            throw TLSSetupError("--tls-key \(path): cannot read a PEM private key", cause: error)
        }
    }
}

/// How a client of Arbiter's services speaks TLS: which servers it trusts and the certificate it
/// presents. Give it to ``HTTPClientSettings/makeClient(tls:eventLoopGroup:)`` and to
/// ``HTTP1Connections/init(settings:tls:eventLoopGroup:)`` so that both paths trust the same CA.
///
/// Server certificates are always verified, host name (or IP address) included: a certificate
/// for `127.0.0.1` needs `subjectAltName = IP:127.0.0.1`.
public struct ClientTLS: Sendable {
    /// The NIOSSL configuration (what AsyncHTTPClient is given).
    public let configuration: TLSConfiguration
    /// The context made from it once (what ``HTTP1Connections`` hands each new connection).
    let context: NIOSSLContext

    /// A client with this configuration.
    public init(configuration: TLSConfiguration) throws(TLSSetupError) {
        self.configuration = configuration
        do {
            self.context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSSetupError("the TLS configuration is not usable", cause: error)
        }
    }

    /// A client that trusts the CA in `caFile` (the system's roots when `nil`) and, when
    /// `certificateFile` and `keyFile` are given, presents that certificate.
    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) throws(TLSSetupError) {
        guard (certificateFile == nil) == (keyFile == nil) else {
            throw TLSSetupError("a client certificate needs its key, and a key its certificate")
        }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if let caFile {
            configuration.trustRoots = .certificates(try TLSSettings.certificates(caFile, what: "--tls-ca"))
        }
        if let certificateFile, let keyFile {
            configuration.certificateChain = try TLSSettings.certificates(certificateFile, what: "--tls-cert").map { .certificate($0) }
            configuration.privateKey = .privateKey(try TLSSettings.privateKey(keyFile))
        }
        try self.init(configuration: configuration)
    }

    /// Trusts the system's roots and presents no certificate: what an https URL gets when no
    /// ``ClientTLS`` was given. Made once, when first needed.
    static let systemDefault: ClientTLS? = try? ClientTLS(configuration: .makeClientConfiguration())
}

extension HTTPClientSettings {
    /// A new client with these settings that speaks TLS as `tls` says (`nil`: AsyncHTTPClient's
    /// default, the system's trust roots and no client certificate). Shut it down when done.
    public func makeClient(tls: ClientTLS?, eventLoopGroup: any EventLoopGroup = HTTPClient.defaultEventLoopGroup) -> HTTPClient {
        var configuration = configuration()
        if let tls { configuration.tlsConfiguration = tls.configuration }
        return HTTPClient(eventLoopGroup: eventLoopGroup, configuration: configuration)
    }
}
