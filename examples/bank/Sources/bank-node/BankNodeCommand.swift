import ArbiterCommandLine
import ArbiterCore
import ArbiterHTTP
import ArbiterParticipant
import ArbiterParticipantPostgres
import ArbiterPostgres
import ArbiterRuntime
import ArgumentParser
import BankExample
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// `bank-node`: one bank of the transfer demo, a participant service that keeps accounts.
///
/// It prints `bank-node listening on http://HOST:PORT` on standard output once it accepts
/// connections (with `--port 0`, the port the system chose), logs on standard error, and stops
/// gracefully on SIGTERM or SIGINT.
@main
struct BankNodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bank-node",
        abstract: "Run a bank: an Arbiter participant that keeps accounts in SQLite, or in PostgreSQL with --postgres.",
        discussion: """
            Serves the participant protocol (POST /v1/prepare, /v1/commit, /v1/abort, /v1/batch, \
            GET /healthz), behind the protocol secret, and the bank's API (POST /accounts, \
            GET /accounts, GET /accounts/{id}), behind the client tokens (or the protocol secret \
            when none are given). With --operator-secret-file, also the operator endpoints under \
            /v1/operator (in-doubt transactions, heuristic decisions, the audit trail). SIGHUP \
            re-reads the client and operator token files.

            With --postgres postgres://USER@HOST:PORT/DATABASE the accounts live in PostgreSQL \
            (the table bank_accounts, created on first start) and each branch is a plain UPDATE in \
            a transaction the node prepares (PREPARE TRANSACTION) and commits (COMMIT PREPARED); \
            PostgreSQL's max_prepared_transactions must be at least --postgres-prepared-max.

            Every option may also come from an environment variable, ARBITER_ and its name in \
            capitals (--secret-file: ARBITER_SECRET_FILE), or from the configuration file \
            (--config FILE or ARBITER_CONFIG: a JSON object, YAML in a .yaml or .yml file, or \
            `name = value` lines); a flag on the command line wins over the environment, which \
            wins over the file.
            """
    )

    /// Parses the command line after taking the options it does not give from the environment and
    /// the configuration file (see ``ConfigurationSources``).
    static func main() async {
        let sources = ConfigurationSources(help: helpMessage(columns: 1000))
        let arguments: [String]
        do {
            arguments = try await sources.arguments(Array(CommandLine.arguments.dropFirst()))
        } catch {
            exitWithRuntimeError(error)
        }
        await main(arguments)
    }

    @Option(help: "Configuration file: a JSON object, YAML (.yaml, .yml) or `name = value` lines, keys the option names without dashes (also ARBITER_CONFIG).")
    var config: String?

    @Option(help: "Log format on standard error: text, or json (one object per line: time, level, label, message, metadata).")
    var logFormat: String = "text"

    @Option(help: "The directory of the bank's SQLite database (created if missing); not used with --postgres.")
    var data: String?

    @Option(help: "Keep the accounts in PostgreSQL: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (the password may instead come from PGPASSWORD).")
    var postgres: String?

    @Option(help: "With --postgres: the prefix of this node's prepared transactions' names (<prefix>:<txid>); give each node sharing a PostgreSQL cluster its own.")
    var postgresGidPrefix: String = "bank"

    @Option(help: "With --postgres: connections that stage, prepare and commit at once.")
    var postgresConnections: Int = 16

    @Option(help: "With --postgres: the most transactions prepared at once (PostgreSQL's max_prepared_transactions must be at least this).")
    var postgresPreparedMax: Int = 200

    @Option(help: "With --postgres: milliseconds a branch waits for an account's row lock before voting no.")
    var postgresLockTimeoutMs: Int = 1

    @Option(help: "The TCP port to listen on; 0 lets the system choose (printed at start).")
    var port: Int

    @Option(help: "The coordinator's base URL (http://host:port), or a comma-separated list of a cluster's coordinators. Prepares naming another coordinator are refused; an inquiry the named coordinator does not answer goes to the next.")
    var coordinator: String

    @Option(help: "A file holding the protocol secret: the coordinator presents it, and this node presents it on its inquiries.")
    var secretFile: String

    @Option(help: "A file of client tokens (one per line, optionally name:token) for the bank's own API; without it, that API takes the protocol secret.")
    var clientSecretFile: String?

    @Option(help: "The address to listen on.")
    var host: String = "127.0.0.1"

    @Option(help: "A file of operator tokens (one per line, optionally name:token); without it the operator endpoints are off.")
    var operatorSecretFile: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: "Milliseconds a prepared transaction waits for its decision before asking the coordinator.")
    var inquiryTimeoutMs: Int = 10_000

    @Option(help: "First delay in milliseconds between further inquiries (doubles up to --inquiry-retry-max-ms, 20% jitter).")
    var inquiryRetryInitialMs: Int = 1_000

    @Option(help: "Largest delay in milliseconds between inquiries.")
    var inquiryRetryMaxMs: Int = 30_000

    @Option(help: "Deadline in milliseconds of one inquiry request to the coordinator.")
    var inquiryRequestTimeoutMs: Int = 5_000

    @Option(help: "Milliseconds a protocol request waits for its durable answer before getting 503 (the coordinator retries).")
    var replyTimeoutMs: Int = 10_000

    // Transport: TLS and connection limits.
    @OptionGroup var transport: ServerTransportOptions

    // Trace export (OTLP).
    @OptionGroup var tracing: TracingOptions

    func validate() throws {
        for (name, value) in [("--inquiry-timeout-ms", inquiryTimeoutMs), ("--inquiry-retry-initial-ms", inquiryRetryInitialMs),
                              ("--inquiry-retry-max-ms", inquiryRetryMaxMs), ("--inquiry-request-timeout-ms", inquiryRequestTimeoutMs),
                              ("--reply-timeout-ms", replyTimeoutMs)] where !(1...86_400_000).contains(value) {
            throw ValidationError("\(name) is \(value); give 1 to 86400000 milliseconds")
        }
        if inquiryRetryMaxMs < inquiryRetryInitialMs {
            throw ValidationError("--inquiry-retry-max-ms (\(inquiryRetryMaxMs)) is below --inquiry-retry-initial-ms (\(inquiryRetryInitialMs))")
        }
        guard LogFormat(rawValue: logFormat) != nil else { throw ValidationError("unknown --log-format \(logFormat); give text or json") }
        if data == nil && postgres == nil { throw ValidationError("give --data DIRECTORY (SQLite) or --postgres URL (PostgreSQL)") }
        if data != nil && postgres != nil { throw ValidationError("give --data (SQLite) or --postgres (PostgreSQL), not both") }
    }

    func run() async throws {
        // Handlers run on the event loop that read their request: see EventLoopExecutor.
        EventLoopExecutor.install()
        if LogFormat(rawValue: logFormat) == .json {
            LoggingSystem.bootstrap { label in JSONLogHandler(label: label) }
        } else {
            LoggingSystem.bootstrap(StreamLogHandler.standardError)
        }
        let logger = {
            var logger = Logger(label: "bank-node")
            logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            return logger
        }()

        let secret: BearerSecret
        do {
            secret = try BearerSecret.read(fromFile: secretFile)
        } catch {
            throw RuntimeError("--secret-file: \(error)")
        }
        let tokens = try readTokens()
        let options = ParticipantOptions(
            host: host,
            port: port,
            dataDirectory: data ?? "",
            databaseFileName: "bank.sqlite",
            secret: secret,
            clientTokens: tokens.client,
            operatorTokens: tokens.operator,
            coordinators: coordinator.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty },
            protocolConfig: ParticipantConfig(
                inquiryTimeout: .milliseconds(inquiryTimeoutMs),
                inquiryRetry: Backoff(initial: .milliseconds(inquiryRetryInitialMs), max: .milliseconds(inquiryRetryMaxMs))
            ),
            replyTimeout: .milliseconds(replyTimeoutMs),
            inquiryTimeout: .milliseconds(inquiryRequestTimeoutMs),
            logger: logger,
            tls: transport.tlsSettings,
            connectionLimits: transport.connectionLimits
        )
        // Made here so that bad options fail the command at once.
        let participant: BankNode
        do {
            participant = try makeNode(options: options)
        } catch {
            throw RuntimeError("\(error)")
        }
        let traceExport: (any Service)?
        do {
            traceExport = try tracing.bootstrap(serviceName: "bank-node", instance: port == 0 ? URL(fileURLWithPath: data ?? postgresGidPrefix).lastPathComponent : "\(host):\(port)", logger: logger)
        } catch {
            throw RuntimeError("--otlp-endpoint: \(error)")
        }
        let group = ServiceGroup(
            services: [participant.service] + (traceExport.map { [$0] } ?? []), gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        let host = self.host
        let scheme = transport.tlsSettings?.scheme ?? "http"
        // Ends when the service group does; the other tasks then stop.
        try await withThrowingTaskGroup(of: Bool.self) { tasks in
            tasks.addTask { try await group.run(); return true }
            tasks.addTask {
                guard let port = try? await participant.waitUntilListening() else { return false }
                // Written unbuffered: a supervisor (or a test) reads the port from this line.
                FileHandle.standardOutput.write(Data("bank-node listening on \(scheme)://\(host):\(port)\n".utf8))
                return false
            }
            tasks.addTask {
                for await _ in await UnixSignalsSequence(trapping: .sighup) {
                    do {
                        let tokens = try readTokens()
                        participant.reloadCredentials(clientTokens: tokens.client, operatorTokens: tokens.operator)
                        logger.notice("reloaded the token files")
                    } catch {
                        logger.error("SIGHUP: reload failed; the previous tokens stay in force", metadata: ["error": "\(error)"])
                    }
                }
                return false
            }
            for try await serviceGroupEnded in tasks where serviceGroupEnded {
                tasks.cancelAll()
            }
        }
    }

    /// The bank's node: on SQLite, or on PostgreSQL with `--postgres`.
    private func makeNode(options: ParticipantOptions) throws -> BankNode {
        guard let postgres else {
            return .sqlite(try ParticipantNode(resource: BankResource(), options: options, routes: BankRoutes.add(to:)))
        }
        let location = try PostgresLocation(url: postgres, password: ProcessInfo.processInfo.environment["PGPASSWORD"])
        let settings = PostgresParticipantSettings(
            database: location, gidPrefix: postgresGidPrefix, connectionCount: postgresConnections,
            preparedCountMax: postgresPreparedMax, lockTimeout: .milliseconds(postgresLockTimeoutMs))
        return .postgres(try PostgresParticipantNode(resource: PostgresBankResource(), options: options, postgres: settings,
                                                     routes: PostgresBankRoutes.add(to:)))
    }

    /// The client and operator tokens in their files.
    private func readTokens() throws -> (client: [NamedToken]?, operator: [NamedToken]) {
        do {
            return (try clientSecretFile.map { path throws(SecretError) in try NamedToken.read(fromFile: path, defaultName: "client") },
                    try operatorSecretFile.map { path throws(SecretError) in try NamedToken.read(fromFile: path, defaultName: "operator") } ?? [])
        } catch {
            throw RuntimeError("\(error)")
        }
    }
}

/// The node serving now, and the options the next one gets (SIGHUP changes their tokens).


/// A bank node on either store.
enum BankNode: Sendable {
    case sqlite(ParticipantNode<BankResource>)
    case postgres(PostgresParticipantNode<PostgresBankResource>)

    var service: any Service {
        switch self {
        case .sqlite(let node): node
        case .postgres(let node): node
        }
    }

    func waitUntilListening() async throws -> Int {
        switch self {
        case .sqlite(let node): try await node.waitUntilListening()
        case .postgres(let node): try await node.waitUntilListening()
        }
    }

    func reloadCredentials(clientTokens: [NamedToken]?, operatorTokens: [NamedToken]) {
        switch self {
        case .sqlite(let node): node.reloadCredentials(clientTokens: clientTokens, operatorTokens: operatorTokens)
        case .postgres(let node): node.reloadCredentials(clientTokens: clientTokens, operatorTokens: operatorTokens)
        }
    }
}
