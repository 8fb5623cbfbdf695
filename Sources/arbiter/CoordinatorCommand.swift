import ArbiterCoordinator
import ArbiterCommandLine
import ArbiterCore
import ArbiterHTTP
import ArbiterPostgres
import ArbiterRuntime
import ArgumentParser
import Logging
import Foundation
import ServiceLifecycle
import UnixSignals

/// `arbiter coordinator`: runs a coordinator.
struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run a coordinator: the decision log, the HTTP API, recovery and timeouts.",
        discussion: """
            The decision log is DATA/coordinator.sqlite (SQLite, WAL, fsync on every commit decision, \
            shared by every transaction deciding at the same moment). On start the coordinator \
            finishes every transaction it had not ended. SIGTERM or SIGINT stops it gracefully; \
            a kill at any instant loses nothing that was reported. Once it accepts connections it \
            prints `arbiter coordinator listening on http://HOST:PORT` (https with --tls-cert) on \
            standard output.

            Every option may also come from an environment variable, ARBITER_ and its name in \
            capitals (--secret-file: ARBITER_SECRET_FILE), or from the configuration file \
            (--config FILE or ARBITER_CONFIG: a JSON object, YAML in a .yaml or .yml file, or \
            `name = value` lines); a flag on the command line wins over the environment, which \
            wins over the file.
            """
    )

    @Option(help: "Configuration file: a JSON object, YAML (.yaml, .yml) or `name = value` lines, keys the option names without dashes (also ARBITER_CONFIG).")
    var config: String?

    @Option(help: "Log format on standard error: text, or json (one object per line: time, level, label, message, metadata).")
    var logFormat: String = "text"

    @Option(help: "Directory for the decision log (created if missing); with --store, for the operators' audit trail only.")
    var data: String

    @Option(help: "Keep decisions in a PostgreSQL database that several coordinators share (a cluster), postgres://USER@HOST:PORT/DATABASE; each coordinator needs its own --name. Default: the SQLite log in --data, this coordinator's alone.")
    var store: String?

    @Option(help: "File holding the --store database password (or set PGPASSWORD); never give it in the URL of a shared configuration.")
    var storePasswordFile: String?

    @Option(help: "With --store: milliseconds this coordinator's lease lasts after each renewal; the others take its unfinished transactions over about this long after it dies.")
    var leaseMs: Int = 10_000

    @Option(help: "With --store: milliseconds between searches for the unfinished transactions of coordinators whose lease expired.")
    var sweepMs: Int = 2_000

    @Option(help: "Port to listen on (0: any free port).")
    var port: Int = 7000

    @Option(help: "Address to listen on. Only loopback unless you choose otherwise.")
    var host: String = "127.0.0.1"

    @Option(help: "File holding the protocol secret, presented to participants and accepted from their inquiries. Without --client-secret-file, clients use it too.")
    var secretFile: String

    @Option(help: "File of client tokens (one per line, optionally name:token): only these may submit and read transactions, and the protocol secret no longer can.")
    var clientSecretFile: String?

    @Option(help: "File of operator tokens (one per line, optionally name:token) for listing transactions (default: listing disabled).")
    var operatorSecretFile: String?

    @Option(help: "Participant registry: one `NAME URL [SECRET_FILE]` line per participant. Branches may name only these (by name or URL). Re-read on SIGHUP, with the token files.")
    var participants: String?

    @Flag(help: "UNSAFE: talk to any participant URL a client names, sending it the protocol secret. For experiments on one machine only; use --participants otherwise.")
    var allowAnyParticipant = false

    @Option(help: "URL participants use to reach this coordinator (default: http://HOST:PORT).")
    var advertisedUrl: String?

    @Option(help: "Name of this coordinator: the prefix of the ids it makes.")
    var name: String = "arbiter"

    @Option(help: "Prepare deadline in milliseconds, when a request gives none.")
    var prepareTimeoutMs: Int = 5000

    @Option(help: "First phase-2 resend delay in milliseconds (doubles up to --retry-max-ms, 20% jitter).")
    var retryInitialMs: Int = 100

    @Option(help: "Largest phase-2 resend delay in milliseconds.")
    var retryMaxMs: Int = 10_000

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    // Transport: TLS and connection limits.
    @OptionGroup var transport: ServerTransportOptions

    // Trace export (OTLP).
    @OptionGroup var tracing: TracingOptions

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535, got \(port)") }
        guard prepareTimeoutMs > 0 else { throw ValidationError("--prepare-timeout-ms must be positive") }
        guard retryInitialMs > 0, retryMaxMs >= retryInitialMs else {
            throw ValidationError("need 0 < --retry-initial-ms <= --retry-max-ms")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard (100...3_600_000).contains(leaseMs), (10...3_600_000).contains(sweepMs) else {
            throw ValidationError("--lease-ms must be 100...3600000 and --sweep-ms 10...3600000")
        }
        if store == nil, storePasswordFile != nil { throw ValidationError("--store-password-file needs --store") }
        guard LogFormat(rawValue: logFormat) != nil else { throw ValidationError("unknown --log-format \(logFormat); give text or json") }
        guard (participants != nil) != allowAnyParticipant else {
            throw ValidationError(participants == nil
                ? "name the participants this coordinator may talk to with --participants FILE (or, unsafe, --allow-any-participant)"
                : "--participants and --allow-any-participant exclude each other")
        }
    }

    func run() async throws {
        // Handlers run on the event loop that read their request: see EventLoopExecutor.
        EventLoopExecutor.install()
        if LogFormat(rawValue: logFormat) == .json {
            LoggingSystem.bootstrap { label in JSONLogHandler(label: label) }
        }
        let logger = {
            var logger = Logger(label: "arbiter.coordinator")
            logger.logLevel = Logger.Level(rawValue: logLevel)!
            return logger
        }()
        let secret = try readSecret(secretFile, option: "--secret-file")
        let tokens = try readTokens()
        let registry: ParticipantRegistry
        if let participants {
            do {
                registry = try ParticipantRegistry(file: participants)
            } catch {
                throw RuntimeError("--participants: \(error)")
            }
        } else {
            registry = .open()
            logger.warning("--allow-any-participant: any client may make this coordinator call any URL with its protocol secret")
        }
        let cluster = try clusterOptions()
        let options = CoordinatorOptions(
            dataDirectory: data, host: host, port: port, advertisedURL: advertisedUrl, name: name,
            secret: secret, participants: registry, clientTokens: tokens.client, operatorTokens: tokens.operator,
            protocolConfig: CoordinatorConfig(
                prepareTimeout: .milliseconds(prepareTimeoutMs),
                phaseTwoRetry: Backoff(initial: .milliseconds(retryInitialMs), max: .milliseconds(retryMaxMs))),
            logger: logger,
            tls: transport.tlsSettings, connectionLimits: transport.connectionLimits, cluster: cluster)
        let traceExport: (any Service)?
        do {
            traceExport = try tracing.bootstrap(serviceName: "arbiter-coordinator", instance: name, logger: logger)
        } catch {
            throw RuntimeError("--otlp-endpoint: \(error)")
        }
        let service = CoordinatorService(options: options)
        let group = ServiceGroup(
            services: [service] + (traceExport.map { [$0] } ?? []), gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        let host = self.host
        let scheme = transport.tlsSettings?.scheme ?? "http"
        // Ends when the service group does (signal, or a failure); the other tasks then stop.
        try await withThrowingTaskGroup(of: Bool.self) { tasks in
            tasks.addTask { try await group.run(); return true }
            tasks.addTask {
                // nil when the service stopped without listening (port in use): then there is
                // nothing to announce, and waiting would keep the command from exiting.
                guard let port = await service.listeningPort() else { return false }
                // Whatever the log level: a supervisor (or a test) reads the port from this line.
                FileHandle.standardOutput.write(Data("arbiter coordinator listening on \(scheme)://\(host):\(port)\n".utf8))
                return false
            }
            tasks.addTask { await reloadOnHangup(service, registry: registry, logger: logger); return false }
            for try await serviceGroupEnded in tasks where serviceGroupEnded {
                tasks.cancelAll()
            }
        }
    }

    /// The shared store of `--store`, with its password from the file or `PGPASSWORD`.
    private func clusterOptions() throws -> ClusterStoreOptions? {
        guard let store else { return nil }
        var password = ProcessInfo.processInfo.environment["PGPASSWORD"]
        if let storePasswordFile {
            do {
                password = try String(contentsOfFile: storePasswordFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw RuntimeError("--store-password-file: cannot read \(storePasswordFile): \(error.localizedDescription)")
            }
        }
        do {
            return ClusterStoreOptions(location: try PostgresLocation(url: store, password: password),
                                       lease: .milliseconds(leaseMs), sweepInterval: .milliseconds(sweepMs))
        } catch {
            throw RuntimeError("--store: \(error)")
        }
    }

    /// The client and operator tokens in their files.
    private func readTokens() throws -> (client: [NamedToken]?, operator: [NamedToken]) {
        (try clientSecretFile.map { try readTokenFile($0, option: "--client-secret-file", defaultName: "client") },
         try operatorSecretFile.map { try readTokenFile($0, option: "--operator-secret-file", defaultName: "operator") } ?? [])
    }

    /// On every SIGHUP: re-reads the registry and the token files and swaps them in. A file with
    /// an error leaves everything as it was, and the error is logged.
    private func reloadOnHangup(_ service: CoordinatorService, registry: ParticipantRegistry, logger: Logger) async {
        for await _ in await UnixSignalsSequence(trapping: .sighup) {
            do {
                let tokens = try readTokens()
                let count = try registry.reload()
                service.reloadCredentials(clientTokens: tokens.client, operatorTokens: tokens.operator)
                logger.notice("reloaded the participant registry and the token files", metadata: ["participants": "\(count)"])
                // A supervisor (or a test) waits for this line to know the new registry is in force.
                FileHandle.standardOutput.write(Data("arbiter coordinator reloaded: \(count) participants\n".utf8))
            } catch {
                logger.error("SIGHUP: reload failed; the previous registry and tokens stay in force", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Reads a token file (one token per line, optionally `name:token`), turning a problem into a
/// message that says what to fix.
func readTokenFile(_ path: String, option: String, defaultName: String) throws -> [NamedToken] {
    do {
        return try NamedToken.read(fromFile: path, defaultName: defaultName)
    } catch {
        throw RuntimeError("\(option): \(error)")
    }
}

/// The token a command presents: the first of the token file at `path` (a plain secret file is a
/// token file of one token), with a message that says what to fix on a problem.
func readPresentedToken(_ path: String, option: String) throws -> BearerSecret {
    try readTokenFile(path, option: option, defaultName: "token")[0].secret
}

/// Reads a secret file, turning a problem into a message that says what to fix.
func readSecret(_ path: String, option: String) throws -> BearerSecret {
    do {
        return try BearerSecret.read(fromFile: path)
    } catch {
        throw RuntimeError("\(option): \(error)")
    }
}
