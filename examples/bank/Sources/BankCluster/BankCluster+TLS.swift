public import ArbiterHTTP
public import ArbiterTesting

extension BankCluster {
    /// TLS for every process of a cluster: each serves https with the same certificate (for
    /// 127.0.0.1), presents it when it calls the others, and trusts the test CA; with
    /// ``requiresClientCertificates``, each also refuses clients without a certificate from that CA.
    public struct TLS: Sendable {
        public var certificates: TestCertificates
        public var requiresClientCertificates: Bool

        public init(certificates: TestCertificates, requiresClientCertificates: Bool = true) {
            self.certificates = certificates
            self.requiresClientCertificates = requiresClientCertificates
        }

        /// Makes the certificates (with `openssl`) in `directory`.
        public init(directory: String, requiresClientCertificates: Bool = true) throws {
            self.init(certificates: try TestCertificates(directory: directory), requiresClientCertificates: requiresClientCertificates)
        }

        /// The flags every process gets.
        var arguments: [String] {
            ["--tls-cert", certificates.server.certificate, "--tls-key", certificates.server.key, "--tls-ca", certificates.caCertificate]
                + (requiresClientCertificates ? ["--tls-require-client-cert"] : [])
        }

        /// What the cluster's clients use: the CA, and the client certificate.
        public func clientTLS() throws -> ClientTLS {
            try ClientTLS(caFile: certificates.caCertificate, certificateFile: certificates.client.certificate, keyFile: certificates.client.key)
        }
    }
}
