import ArbiterCore
import ArbiterHTTP
import ArbiterParticipant
@testable import ArbiterParticipantPostgres
import ArbiterPostgres
import ArbiterTesting
import AsyncHTTPClient
import BankExample
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Testing

// A PostgreSQL participant in this process (the bank's PostgreSQL resource), spoken to over HTTP as
// its coordinator would, with PostgreSQL's own view (pg_prepared_xacts, the tables) checked beside.

private let protocolText = "test-protocol-secret"
private let operatorText = "test-operator-secret"

private func quietLogger() -> Logger {
    var logger = Logger(label: "participant-postgres-test")
    logger.logLevel = ProcessInfo.processInfo.environment["ARBITER_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
    return logger
}

/// A running node: its URL, an HTTP client, and the PostgreSQL it uses.
struct RunningPostgresNode {
    let url: String
    let http: HTTPClient
    let database: PostgresServer

    /// Sends `body` to `path` with `token`; returns the status and the body's text.
    @discardableResult
    func send(_ method: HTTPMethod, _ path: String, _ body: String? = nil, token: String = protocolText) async throws -> (status: Int, text: String) {
        var request = HTTPClientRequest(url: url + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await http.execute(request, timeout: .seconds(30))
        let buffer = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), String(buffer: buffer))
    }

    func prepare(_ txid: String, _ payload: String, onePhase: Bool = false) async throws -> (status: Int, text: String) {
        try await send(.POST, "/v1/prepare", #"{"txid":"\#(txid)","coordinator":"http://127.0.0.1:9","payload":\#(payload)\#(onePhase ? #","onePhase":true"# : "")}"#)
    }

    func balance(_ account: String) async throws -> Int? {
        Int(try await database.psql("SELECT balance FROM bank_accounts WHERE id = '\(account)'").trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func preparedGIDs() async throws -> [String] {
        try await database.psql("SELECT gid FROM pg_prepared_xacts ORDER BY gid").split(separator: "\n").map(String.init)
    }
}

/// Runs a node on `database` (port chosen by the system) around `body`, then stops it gracefully.
func withPostgresNode<T>(
    _ database: PostgresServer,
    retention: Duration = .seconds(3600),
    replyTimeout: Duration = .seconds(10),
    settings configure: (inout PostgresParticipantSettings) -> Void = { _ in },
    _ body: (RunningPostgresNode) async throws -> T
) async throws -> T {
    let secret = try BearerSecret(protocolText)
    let options = ParticipantOptions(
        port: 0, dataDirectory: "", secret: secret,
        operatorTokens: [NamedToken(name: "test-operator", secret: try BearerSecret(operatorText))],
        protocolConfig: ParticipantConfig(inquiryTimeout: .seconds(600), retention: retention),
        replyTimeout: replyTimeout,
        seed: 42, logger: quietLogger())
    var settings = PostgresParticipantSettings(database: try PostgresLocation(url: database.url), gidPrefix: "test-node", connectionCount: 4)
    configure(&settings)
    let node = try PostgresParticipantNode(resource: PostgresBankResource(), options: options, postgres: settings,
                                           routes: PostgresBankRoutes.add(to:))
    let group = ServiceGroup(services: [node], logger: quietLogger())
    let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
    do {
        let result = try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                let port = try await node.waitUntilListening()
                let result = try await body(RunningPostgresNode(url: "http://127.0.0.1:\(port)", http: http, database: database))
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
        try await http.shutdown()
        return result
    } catch {
        try? await http.shutdown()
        throw error
    }
}

@Suite("Participant on PostgreSQL", .serialized, .enabled(if: PostgresServer.isAvailable, "needs PostgreSQL (Debian: postgresql)"))
struct PostgresParticipantTests {
    static func database(maxPrepared: Int = 200) async throws -> PostgresServer {
        try await PostgresServer(database: "bank", settings: ["max_prepared_transactions": "\(maxPrepared)"])
    }

    static func openAccounts(_ node: RunningPostgresNode, _ accounts: [String: Int]) async throws {
        for (id, balance) in accounts {
            let (status, text) = try await node.send(.POST, "/accounts", #"{"id":"\#(id)","balance":\#(balance)}"#)
            #expect(status == 201, "\(text)")
        }
    }

    @Test("the embedded schemas are byte for byte schemas/participant-postgres*.sql")
    func schemaFile() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for (name, embedded) in [("participant-postgres.sql", ParticipantPostgresSchemas.participantPostgres),
                                 ("participant-postgres.v2.sql", ParticipantPostgresSchemas.participantPostgresV2)] {
            let file = try String(contentsOf: root.appendingPathComponent("schemas/" + name), encoding: .utf8)
            #expect(file == embedded + "\n" || file == embedded, "\(name): run schemas/embed-in-swift.sh")
        }
    }

    @Test("a database at schema version 1 is brought to version 2 at start, and its transactions in doubt survive it")
    func upgradesVersion1() async throws {
        let database = try await Self.database()
        // Version 1 as an earlier release left it, with one transaction in doubt.
        try await database.psql("""
            CREATE TABLE arbiter_schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
            \(ParticipantPostgresSchemas.participantPostgres)
            INSERT INTO arbiter_schema_version VALUES ('participant-postgres', 1);
            INSERT INTO arbiter_participant_node (gid_prefix) VALUES ('test-node');
            """)
        try await withPostgresNode(database) { node in
            try await Self.openAccounts(node, ["ivy": 10])
            let prepared = try await node.prepare("t-v2", #"{"op":"debit","account":"ivy","amount":3}"#)
            #expect(prepared.text.contains(#""vote":"yes""#), "\(prepared)")
        }
        #expect(try await database.psql("SELECT version FROM arbiter_schema_version WHERE component = 'participant-postgres'") == "2\n")
        try await withPostgresNode(database) { node in
            #expect(try await node.preparedGIDs() == ["test-node:t-v2"])
            let (status, text) = try await node.send(.POST, "/v1/commit", #"{"txid":"t-v2"}"#)
            #expect(status == 200, "\(text)")
            #expect(try await node.balance("ivy") == 7)
        }
        try await database.stop()
    }

    @Test("prepare is a PREPARE TRANSACTION holding the change; commit is COMMIT PREPARED; a repeated commit is answered the same")
    func prepareAndCommit() async throws {
        let database = try await Self.database()
        try await withPostgresNode(database) { node in
            try await Self.openAccounts(node, ["alice": 100])
            let vote = try await node.prepare("t-1", #"{"op":"debit","account":"alice","amount":30}"#)
            #expect(vote.status == 200 && vote.text.contains(#""vote":"yes""#), "\(vote)")
            #expect(try await node.preparedGIDs() == ["test-node:t-1"])
            // Invisible until committed.
            #expect(try await node.balance("alice") == 100)
            let inDoubt = try await node.send(.GET, "/v1/operator/in-doubt", token: operatorText)
            #expect(inDoubt.text.contains("t-1") && inDoubt.text.contains("bank_accounts (RowExclusiveLock)"), "\(inDoubt)")

            let ack = try await node.send(.POST, "/v1/commit", #"{"txid":"t-1"}"#)
            #expect(ack.status == 200 && ack.text.contains("committed"), "\(ack)")
            #expect(try await node.preparedGIDs().isEmpty)
            #expect(try await node.balance("alice") == 70)
            let again = try await node.send(.POST, "/v1/commit", #"{"txid":"t-1"}"#)
            #expect(again.text.contains("committed"), "\(again)")
            let status = try await node.send(.GET, "/v1/operator/transactions/t-1", token: operatorText)
            #expect(status.text.contains(#""state":"committed""#), "\(status)")
        }
        try await database.stop()
    }

    @Test("abort rolls the prepared transaction back; an abort before its prepare leaves a tombstone and the late prepare votes no")
    func abortAndTombstone() async throws {
        let database = try await Self.database()
        try await withPostgresNode(database) { node in
            try await Self.openAccounts(node, ["bob": 50])
            _ = try await node.prepare("t-2", #"{"op":"debit","account":"bob","amount":20}"#)
            let ack = try await node.send(.POST, "/v1/abort", #"{"txid":"t-2"}"#)
            #expect(ack.text.contains("aborted"), "\(ack)")
            #expect(try await node.preparedGIDs().isEmpty)
            #expect(try await node.balance("bob") == 50)

            let tombstone = try await node.send(.POST, "/v1/abort", #"{"txid":"t-3"}"#)
            #expect(tombstone.text.contains("aborted"), "\(tombstone)")
            let late = try await node.prepare("t-3", #"{"op":"debit","account":"bob","amount":20}"#)
            #expect(late.text.contains(#""vote":"no""#), "\(late)")
            #expect(try await node.preparedGIDs().isEmpty)
            #expect(try await node.balance("bob") == 50)
        }
        try await database.stop()
    }

    @Test("a row held by a prepared transaction makes a second prepare vote no at once; a CHECK refuses an overdraft")
    func conflictsAndChecks() async throws {
        let database = try await Self.database()
        try await withPostgresNode(database) { node in
            try await Self.openAccounts(node, ["carol": 10])
            let first = try await node.prepare("t-4", #"{"op":"debit","account":"carol","amount":5}"#)
            #expect(first.text.contains(#""vote":"yes""#), "\(first)")
            let second = try await node.prepare("t-5", #"{"op":"credit","account":"carol","amount":5}"#)
            #expect(second.text.contains(#""vote":"no""#) && second.text.contains("locked"), "\(second)")
            _ = try await node.send(.POST, "/v1/commit", #"{"txid":"t-4"}"#)
            let overdraft = try await node.prepare("t-6", #"{"op":"debit","account":"carol","amount":6}"#)
            #expect(overdraft.text.contains(#""vote":"no""#) && overdraft.text.contains("insufficient funds"), "\(overdraft)")
            let missing = try await node.prepare("t-7", #"{"op":"debit","account":"nobody","amount":1}"#)
            #expect(missing.text.contains("no account nobody"), "\(missing)")
            let onePhase = try await node.prepare("t-8", #"{"op":"transfer","account":"carol","to":"carol2","amount":1}"#, onePhase: true)
            #expect(onePhase.text.contains("aborted"), "\(onePhase)")
            #expect(try await node.preparedGIDs().isEmpty)
            #expect(try await node.balance("carol") == 5)
        }
        try await database.stop()
    }

    @Test("a one-phase prepare stages and commits in one transaction; a resend gets the recorded outcome")
    func onePhase() async throws {
        let database = try await Self.database()
        try await withPostgresNode(database) { node in
            try await Self.openAccounts(node, ["dave": 10, "erin": 0])
            let first = try await node.prepare("t-9", #"{"op":"transfer","account":"dave","to":"erin","amount":4}"#, onePhase: true)
            #expect(first.text.contains("committed"), "\(first)")
            let again = try await node.prepare("t-9", #"{"op":"transfer","account":"dave","to":"erin","amount":4}"#, onePhase: true)
            #expect(again.text.contains("committed"), "\(again)")
            #expect(try await node.balance("dave") == 6)
            #expect(try await node.balance("erin") == 4)
        }
        try await database.stop()
    }

    @Test("after a restart the transactions in doubt come back from pg_prepared_xacts, and their commit applies")
    func recovery() async throws {
        let database = try await Self.database()
        try await withPostgresNode(database) { node in
            try await Self.openAccounts(node, ["frank": 40])
            _ = try await node.prepare("t-10", #"{"op":"debit","account":"frank","amount":15}"#)
        }
        // A stage that never reached PREPARE TRANSACTION leaves its row `prepared`; recovery ends it.
        try await database.psql("INSERT INTO arbiter_participant_transaction (txid, state, coordinator, prepared_at) VALUES ('t-orphan', 'prepared', 'http://127.0.0.1:9', now())")
        try await withPostgresNode(database) { node in
            let inDoubt = try await node.send(.GET, "/v1/operator/in-doubt", token: operatorText)
            #expect(inDoubt.text.contains("t-10") && !inDoubt.text.contains("t-orphan"), "\(inDoubt)")
            let orphan = try await node.send(.GET, "/v1/operator/transactions/t-orphan", token: operatorText)
            #expect(orphan.text.contains(#""state":"aborted""#), "\(orphan)")
            let ack = try await node.send(.POST, "/v1/commit", #"{"txid":"t-10"}"#)
            #expect(ack.text.contains("committed"), "\(ack)")
            #expect(try await node.balance("frank") == 25)
            #expect(try await node.preparedGIDs().isEmpty)
        }
        try await database.stop()
    }

    @Test("an operator's heuristic decision rolls back or commits the prepared transaction after a forced audit row")
    func heuristicDecision() async throws {
        let database = try await Self.database()
        try await withPostgresNode(database) { node in
            try await Self.openAccounts(node, ["gina": 40])
            _ = try await node.prepare("t-11", #"{"op":"debit","account":"gina","amount":15}"#)
            let decided = try await node.send(.POST, "/v1/operator/transactions/t-11/decide",
                #"{"outcome":"aborted","iUnderstandThisMayBreakAtomicity":true,"reason":"coordinator lost"}"#, token: operatorText)
            #expect(decided.status == 200 && decided.text.contains(#""heuristic":true"#), "\(decided)")
            #expect(try await node.preparedGIDs().isEmpty)
            #expect(try await node.balance("gina") == 40)
            let audit = try await node.send(.GET, "/v1/operator/audit", token: operatorText)
            #expect(audit.text.contains("coordinator lost") && audit.text.contains("done"), "\(audit)")

            _ = try await node.prepare("t-17", #"{"op":"debit","account":"gina","amount":5}"#)
            let committed = try await node.send(.POST, "/v1/operator/transactions/t-17/decide",
                #"{"outcome":"committed","iUnderstandThisMayBreakAtomicity":true,"reason":"the coordinator's log says committed"}"#, token: operatorText)
            #expect(committed.status == 200 && committed.text.contains(#""state":"committed""#) && committed.text.contains(#""heuristic":true"#), "\(committed)")
            #expect(try await node.balance("gina") == 35)
            #expect(try await node.preparedGIDs().isEmpty)
        }
        try await database.stop()
    }

    @Test("the node refuses to start when max_prepared_transactions is below its preparedCountMax, saying what to set")
    func refusesTooFewPreparedTransactions() async throws {
        let database = try await Self.database(maxPrepared: 10)
        await #expect {
            try await withPostgresNode(database, settings: { $0.preparedCountMax = 128 }) { _ in }
        } throws: { error in
            "\(error)".contains("max_prepared_transactions = 10")
        }
        try await database.stop()
    }

    @Test("past preparedCountMax a prepare votes no; once one ends, prepares are taken again")
    func preparedLimit() async throws {
        let database = try await Self.database()
        try await withPostgresNode(database, settings: { $0.preparedCountMax = 1 }) { node in
            try await Self.openAccounts(node, ["hal": 10, "ida": 10])
            let first = try await node.prepare("t-12", #"{"op":"debit","account":"hal","amount":1}"#)
            #expect(first.text.contains(#""vote":"yes""#), "\(first)")
            let second = try await node.prepare("t-13", #"{"op":"debit","account":"ida","amount":1}"#)
            #expect(second.text.contains(#""vote":"no""#) && second.text.contains("prepared here already"), "\(second)")
            _ = try await node.send(.POST, "/v1/commit", #"{"txid":"t-12"}"#)
            let third = try await node.prepare("t-14", #"{"op":"debit","account":"ida","amount":1}"#)
            #expect(third.text.contains(#""vote":"yes""#), "\(third)")
            _ = try await node.send(.POST, "/v1/abort", #"{"txid":"t-14"}"#)
            #expect(try await node.preparedGIDs().isEmpty)
        }
        try await database.stop()
    }

    @Test("ended transactions are deleted once past their retention; those in doubt are kept")
    func retention() async throws {
        let database = try await Self.database()
        try await withPostgresNode(database, retention: .milliseconds(200)) { node in
            try await Self.openAccounts(node, ["jon": 10, "kim": 10])
            _ = try await node.prepare("t-15", #"{"op":"debit","account":"jon","amount":1}"#)
            _ = try await node.send(.POST, "/v1/commit", #"{"txid":"t-15"}"#)
            _ = try await node.prepare("t-16", #"{"op":"debit","account":"kim","amount":1}"#)
            let deadline = ContinuousClock.now + .seconds(30)
            var remaining = ""
            while ContinuousClock.now < deadline {
                remaining = try await database.psql("SELECT string_agg(txid, ',' ORDER BY txid) FROM arbiter_participant_transaction")
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                if remaining == "t-16" { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(remaining == "t-16", "the committed row goes, the one in doubt stays: \(remaining)")
            _ = try await node.send(.POST, "/v1/abort", #"{"txid":"t-16"}"#)
        }
        try await database.stop()
    }

    @Test("a database belongs to one node: a node with another prefix is refused, and what to do is said")
    func oneNodePerDatabase() async throws {
        let database = try await Self.database()
        try await withPostgresNode(database) { _ in }
        await #expect {
            try await withPostgresNode(database, settings: { $0.gidPrefix = "another-node" }) { _ in }
        } throws: { error in
            "\(error)".contains("belongs to the participant whose prepared transactions are named test-node")
        }
        try await database.stop()
    }

    @Test("PostgreSQL stops while a transaction is prepared: the commit waits (503 after the reply timeout), then applies once it is back")
    func postgresAway() async throws {
        let database = try await Self.database()
        try await withPostgresNode(database, replyTimeout: .seconds(2)) { node in
            try await Self.openAccounts(node, ["lea": 10])
            _ = try await node.prepare("t-18", #"{"op":"debit","account":"lea","amount":4}"#)
            try await database.stop()
            let away = try await node.send(.POST, "/v1/commit", #"{"txid":"t-18"}"#)
            #expect(away.status == 503, "\(away)")
            let ready = try await node.send(.GET, "/readyz")
            #expect(ready.status == 503, "\(ready)")
            try await database.start()
            var answer = (status: 0, text: "")
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline {
                answer = try await node.send(.POST, "/v1/commit", #"{"txid":"t-18"}"#)
                if answer.status == 200 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(answer.status == 200 && answer.text.contains("committed"), "\(answer)")
            #expect(try await node.balance("lea") == 6)
            #expect(try await node.preparedGIDs().isEmpty)
        }
        try await database.stop()
    }
}
