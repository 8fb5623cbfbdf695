import Foundation

/// Certificates for TLS tests, demos and benchmarks, made at run time with the `openssl` command
/// in a directory of the caller's: a CA, a server certificate for `127.0.0.1` and `localhost`,
/// a client certificate, an expired server certificate, and another CA with a server and a client
/// certificate of its own (which the first CA's holders must refuse). Keys are EC P-256.
public struct TestCertificates: Sendable {
    /// A certificate and its key, as PEM files.
    public struct Identity: Sendable {
        public var certificate: String
        public var key: String
    }

    /// The directory that holds the files.
    public let directory: String
    /// The CA everything below but ``otherCA``'s certificates chain to (its key is beside it).
    public let caCertificate: String
    /// For `127.0.0.1` and `localhost` (subjectAltName `IP:127.0.0.1, DNS:localhost`); usable as a
    /// client certificate too, as a service presents one identity both ways.
    public let server: Identity
    /// A client certificate (extendedKeyUsage clientAuth), subject `CN=arbiter-client`.
    public let client: Identity
    /// A server certificate for `127.0.0.1` that expired on 2 January 2020.
    public let expiredServer: Identity
    /// Another CA, trusted by nobody here.
    public let otherCACertificate: String
    /// A server certificate for `127.0.0.1` from the other CA.
    public let otherServer: Identity
    /// A client certificate from the other CA.
    public let otherClient: Identity

    /// Makes every certificate in `directory` (created if missing).
    ///
    /// - Throws: ``HarnessError`` when `openssl` is missing or fails (its output is in the message).
    public init(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.directory = directory
        let maker = Maker(directory: directory)
        caCertificate = try maker.certificateAuthority("ca", subject: "/CN=arbiter-test-ca")
        otherCACertificate = try maker.certificateAuthority("other-ca", subject: "/CN=arbiter-other-ca")
        let serverNames = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
        let clientNames = "extendedKeyUsage=clientAuth\n"
        server = try maker.leaf("server", subject: "/CN=127.0.0.1", ca: "ca", extensions: serverNames)
        client = try maker.leaf("client", subject: "/CN=arbiter-client", ca: "ca", extensions: clientNames)
        otherServer = try maker.leaf("other-server", subject: "/CN=127.0.0.1", ca: "other-ca", extensions: serverNames)
        otherClient = try maker.leaf("other-client", subject: "/CN=arbiter-other-client", ca: "other-ca", extensions: clientNames)
        expiredServer = try maker.leaf(
            "expired-server", subject: "/CN=127.0.0.1", ca: "ca", extensions: serverNames,
            validity: (start: "20200101000000Z", end: "20200102000000Z"))
    }

    /// Whether the `openssl` command can be run.
    public static var isOpenSSLAvailable: Bool {
        (try? Maker.run(["version"])) != nil
    }

    private struct Maker {
        let directory: String

        func path(_ name: String) -> String { directory + "/" + name }

        /// A self-signed CA: `NAME.pem` and `NAME.key`.
        func certificateAuthority(_ name: String, subject: String) throws -> String {
            try Self.run(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path("\(name).key")])
            try Self.run([
                "req", "-x509", "-new", "-key", path("\(name).key"), "-sha256", "-days", "30", "-subj", subject,
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-out", path("\(name).pem"),
            ])
            return path("\(name).pem")
        }

        /// A certificate signed by the CA `ca`: `NAME.pem` and `NAME.key`. With `validity`, the
        /// dates are set through `openssl ca` (which, unlike `x509 -req`, takes explicit dates).
        func leaf(
            _ name: String, subject: String, ca: String, extensions: String,
            validity: (start: String, end: String)? = nil
        ) throws -> Identity {
            try Self.run(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path("\(name).key")])
            try Self.run(["req", "-new", "-key", path("\(name).key"), "-subj", subject, "-out", path("\(name).csr")])
            let extensionsFile = path("\(name).ext")
            try ("basicConstraints=CA:FALSE\n" + extensions).write(toFile: extensionsFile, atomically: true, encoding: .utf8)
            if let validity {
                let database = path("\(name).index")
                try "".write(toFile: database, atomically: true, encoding: .utf8)
                let configuration = """
                    [ca]
                    default_ca = test
                    [test]
                    database = \(database)
                    new_certs_dir = \(directory)
                    serial = \(path("\(name).serial"))
                    default_md = sha256
                    policy = anything
                    unique_subject = no
                    [anything]
                    commonName = supplied
                    """
                try configuration.write(toFile: path("\(name).cnf"), atomically: true, encoding: .utf8)
                try "1000\n".write(toFile: path("\(name).serial"), atomically: true, encoding: .utf8)
                try Self.run([
                    "ca", "-batch", "-config", path("\(name).cnf"), "-cert", path("\(ca).pem"), "-keyfile", path("\(ca).key"),
                    "-in", path("\(name).csr"), "-out", path("\(name).pem"), "-extfile", extensionsFile,
                    "-startdate", validity.start, "-enddate", validity.end, "-notext",
                ])
            } else {
                try Self.run([
                    "x509", "-req", "-in", path("\(name).csr"), "-CA", path("\(ca).pem"), "-CAkey", path("\(ca).key"),
                    "-CAcreateserial", "-days", "30", "-sha256", "-extfile", extensionsFile, "-out", path("\(name).pem"),
                ])
            }
            return Identity(certificate: path("\(name).pem"), key: path("\(name).key"))
        }

        @discardableResult
        static func run(_ arguments: [String]) throws -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["openssl"] + arguments
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            do {
                try process.run()
            } catch {
                throw HarnessError("cannot run openssl: \(error)")
            }
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            let text = String(decoding: data, as: UTF8.self)
            guard process.terminationStatus == 0 else {
                throw HarnessError("openssl \(arguments.joined(separator: " ")) failed (\(process.terminationStatus)): \(text)")
            }
            return text
        }
    }
}
