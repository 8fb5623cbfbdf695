import ArbiterHTTP
import ArgumentParser

/// The TLS flags of the commands that call a service (`arbiter txn`, `arbiter participant`).
struct ClientTLSOptions: ParsableArguments {
    @Option(help: "CA certificates (PEM) an https service's certificate must chain to (default: the system's roots).")
    var tlsCa: String?

    @Option(help: "Client certificate (PEM) to present to a service that requires one.")
    var tlsCert: String?

    @Option(help: "Private key (PEM) of --tls-cert.")
    var tlsKey: String?

    /// The client's TLS, `nil` when no TLS flag is given.
    func clientTLS() throws -> ClientTLS? {
        guard tlsCa != nil || tlsCert != nil || tlsKey != nil else { return nil }
        do {
            return try ClientTLS(caFile: tlsCa, certificateFile: tlsCert, keyFile: tlsKey)
        } catch {
            throw ValidationError("\(error)")
        }
    }
}
