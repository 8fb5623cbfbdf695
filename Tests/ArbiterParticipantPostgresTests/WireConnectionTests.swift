import ArbiterPostgres
@testable import ArbiterParticipantPostgres
import ArbiterTesting
import Foundation
import Logging
import NIOCore
import PostgresNIO
import Testing
#if canImport(Glibc)
import Glibc
#endif

// The participant's own PostgreSQL connection against a real server: each way of logging in, what
// a pipelined exchange does when a statement in it fails, values through the binary formats, and
// a session the server ends.

private func location(_ server: PostgresServer, user: String = "postgres", password: String? = nil) throws -> PostgresLocation {
    var location = try PostgresLocation(url: server.url)
    location.user = user
    location.password = password
    return location
}

private func open(_ location: PostgresLocation) throws(PostgresParticipantError) -> WireConnection {
    try WireConnection.open(location, settings: [("lock_timeout", "50")], timeout: .seconds(5), answerTimeout: .seconds(60))
}

@Suite("The participant's PostgreSQL connection", .enabled(if: PostgresServer.isAvailable, "PostgreSQL is not installed"))
struct WireConnectionTests {
    @Test("logs in with SCRAM-SHA-256, md5 and a plain password as pg_hba.conf asks, and says why a wrong or missing password fails")
    func authentication() async throws {
        let server = try await PostgresServer()
        try await server.psql("""
            SET password_encryption = 'scram-sha-256';
            CREATE ROLE scram_user LOGIN PASSWORD 'sc''ram "secret"';
            CREATE ROLE plain_user LOGIN PASSWORD 'plain';
            SET password_encryption = 'md5';
            CREATE ROLE md5_user LOGIN PASSWORD 'md5 secret';
            """)
        // The first matching line wins: these go before the cluster's trust lines.
        let hba = server.dataDirectory + "/pg_hba.conf"
        let rules = """
            host all scram_user 127.0.0.1/32 scram-sha-256
            host all md5_user 127.0.0.1/32 md5
            host all plain_user 127.0.0.1/32 password

            """
        try (rules + String(contentsOfFile: hba, encoding: .utf8)).write(toFile: hba, atomically: false, encoding: .utf8)
        try await server.psql("SELECT pg_reload_conf()")

        for (user, password) in [("scram_user", #"sc'ram "secret""#), ("md5_user", "md5 secret"), ("plain_user", "plain")] {
            let connection = try open(try location(server, user: user, password: password))
            let answer = try connection.run("SELECT current_user, current_setting('lock_timeout')")
            #expect(try answer.rows.first?.decode(String.self, column: 0) == user)
            #expect(try answer.rows.first?.decode(String.self, column: 1) == "50ms", "the start-up message's settings apply")
            connection.close()
        }

        for user in ["scram_user", "md5_user"] {
            let wrong = #expect(throws: PostgresParticipantError.self) { try open(try location(server, user: user, password: "wrong")) }
            #expect(wrong?.code == .unavailable)
            #expect(wrong?.message.contains("password authentication failed for user \"\(user)\"") == true, "\(String(describing: wrong))")
        }
        let missing = #expect(throws: PostgresParticipantError.self) { try open(try location(server, user: "scram_user")) }
        #expect(missing?.message.contains("asks for a password and none was given") == true, "\(String(describing: missing))")
        try await server.stop()
    }

    @Test("in one exchange each statement answers as if sent alone: a failure fails the rest of its transaction block, not what follows it")
    func pipelinedFailures() async throws {
        let server = try await PostgresServer()
        let connection = try open(try location(server))
        defer { connection.close() }
        _ = try connection.run("CREATE TABLE t (n INT PRIMARY KEY)")

        for statement: PostgresStatement in [
            "BEGIN", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)", "PREPARE TRANSACTION 'g1'",
            "INSERT INTO t VALUES (3)", "SELECT 1 / 0", "INSERT INTO t VALUES (4)",
        ] { connection.enqueue(statement) }
        let answers = try connection.exchange()
        #expect(answers.count == 8)
        #expect(try answers[1].get().tag == "INSERT 0 1")
        #expect(answers[2].failure?.sqlState == "23505", "the duplicate key")
        #expect(answers[3].failure?.sqlState == "25P02", "the transaction block has failed")
        #expect(try answers[4].get().command == "ROLLBACK", "PREPARE TRANSACTION of a failed block rolls it back")
        #expect(try answers[5].get().count == 1)
        #expect(answers[6].failure?.sqlState == "22012")
        #expect(try answers[7].get().count == 1, "a failure outside a block skips nothing after it")
        #expect(try await server.psql("SELECT string_agg(n::text, ',' ORDER BY n) FROM t") == "3,4\n")
        #expect(try await server.psql("SELECT count(*) FROM pg_prepared_xacts") == "0\n")

        // A block that succeeds is prepared, and COMMIT PREPARED makes it visible.
        for statement: PostgresStatement in ["BEGIN", "INSERT INTO t VALUES (5)", "PREPARE TRANSACTION 'g2'"] { connection.enqueue(statement) }
        #expect(try connection.exchange().last?.get().command == "PREPARE TRANSACTION")
        #expect(try await server.psql("SELECT gid FROM pg_prepared_xacts") == "g2\n")
        _ = try connection.run("COMMIT PREPARED 'g2'")
        #expect(try await server.psql("SELECT count(*) FROM t WHERE n = 5") == "1\n")
        try await server.stop()
    }

    @Test("values go and come back in PostgreSQL's binary formats, NULL included")
    func parameters() async throws {
        let server = try await PostgresServer()
        let connection = try open(try location(server))
        defer { connection.close() }
        let date = Date(timeIntervalSince1970: 1_700_000_000.25)
        let uuid = UUID()
        let missing: String? = nil
        let statement: PostgresStatement = """
            SELECT \(Int(-42)), \("it's \"quoted\""), \(true), \(2.5), \(missing)::text, \(ByteBuffer(bytes: [0, 1, 255])),
                   \(["a", "b,c"]), \(date), \(uuid)
            """
        #expect(statement.sql.contains("$9"))
        #expect(!statement.description.contains("quoted"), "a statement's description never shows its values")
        let row = try #require(try connection.run(statement).rows.first)
        #expect(try row.decode(Int.self, column: 0) == -42)
        #expect(try row.decode(String.self, column: 1) == #"it's "quoted""#)
        #expect(try row.decode(Bool.self, column: 2))
        #expect(try row.decode(Double.self, column: 3) == 2.5)
        #expect(try row.decode(String?.self, column: 4) == nil)
        #expect(try row.decode(ByteBuffer.self, column: 5) == ByteBuffer(bytes: [0, 1, 255]))
        #expect(try row.decode([String].self, column: 6) == ["a", "b,c"])
        #expect(try row.decode(Date.self, column: 7) == date)
        #expect(try row.decode(UUID.self, column: 8) == uuid)
        // Messages larger than the read buffer, and many in one read.
        let large = String(repeating: "ab", count: 150_000)
        #expect(try connection.run("SELECT \(large) || 'c'").rows[0].decode(String.self, column: 0) == large + "c")
        let many = try connection.run("SELECT n, repeat('x', n % 100) FROM generate_series(1, 20000) AS n").rows
        #expect(many.count == 20_000)
        #expect(try many.last?.decode(String.self, column: 1) == String(repeating: "x", count: 0))
        #expect(try many[98].decode(String.self, column: 1) == String(repeating: "x", count: 99))
        #expect(throws: PostgresParticipantError.self) { try row.decode(Int.self, column: 1) }
        #expect(throws: PostgresParticipantError.self) { try row.decode(Int.self, column: 9) }
        try await server.stop()
    }

    @Test("a statement with parameters is parsed once per session; one whose parse fails is parsed again next time")
    func preparedStatements() async throws {
        let server = try await PostgresServer()
        let connection = try open(try location(server))
        defer { connection.close() }
        for value in 1...3 {
            #expect(try connection.run("SELECT \(value) + 1").rows[0].decode(Int.self, column: 0) == value + 1)
        }
        let missing: Int? = nil
        #expect(try connection.run("SELECT \(missing)::int8 IS NULL").rows[0].decode(Bool.self, column: 0), "another parameter type, another statement")
        #expect(try connection.run("SELECT count(*) FROM pg_prepared_statements").rows[0].decode(Int.self, column: 0) == 2)

        // A table missing at the first parse: the statement was not prepared, and works once it exists.
        #expect(throws: PostgresParticipantError.self) { try connection.run("INSERT INTO later VALUES (\(1))") }
        _ = try connection.run("CREATE TABLE later (n INT)")
        #expect(try connection.run("INSERT INTO later VALUES (\(1))").count == 1)
        #expect(try connection.run("INSERT INTO later VALUES (\(2))").count == 1)
        #expect(try connection.run("SELECT count(*) FROM pg_prepared_statements").rows[0].decode(Int.self, column: 0) == 3)

        // After DISCARD ALL the session has none: the next use says so, and the one after parses again.
        _ = try connection.run("DISCARD ALL")
        #expect(throws: PostgresParticipantError.self) { try connection.run("SELECT \(5) + 1") }
        #expect(try connection.run("SELECT \(5) + 1").rows[0].decode(Int.self, column: 0) == 6)
        try await server.stop()
    }

    @Test("a session the server ends breaks the connection with `unavailable`, and a BlockingConnection opens a new one")
    func serverEndsTheSession() async throws {
        let server = try await PostgresServer()
        let connection = try open(try location(server))
        let ended = #expect(throws: PostgresParticipantError.self) { try connection.run("SELECT pg_terminate_backend(pg_backend_pid())") }
        #expect(ended?.code == .unavailable)
        #expect(connection.isBroken)

        let blocking = BlockingConnection(location: try location(server), lockTimeout: .milliseconds(10), logger: Logger(label: "test"))
        defer { blocking.close() }
        let first = try blocking.run("SELECT pg_backend_pid()").rows[0].decode(Int32.self, column: 0)
        #expect(throws: PostgresParticipantError.self) { try blocking.run("SELECT pg_terminate_backend(pg_backend_pid())") }
        let second = try blocking.run("SELECT pg_backend_pid()").rows[0].decode(Int32.self, column: 0)
        #expect(first != second)

        try await server.stop()
        let down = #expect(throws: PostgresParticipantError.self) { try blocking.run("SELECT 1") }
        #expect(down?.code == .unavailable)
        // The server says it is shutting down, or the connection was already cut.
        let said = ["terminating connection", "check that it is up", "reading from"]
        #expect(said.contains { down?.message.contains($0) == true }, "\(String(describing: down))")
    }
}

@Test("a server that accepts and never answers breaks the connection after the answer timeout, instead of holding the thread")
func silentServer() throws {
    let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(listener) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    try withUnsafeMutablePointer(to: &address) { pointer in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
            guard bind(listener, raw, length) == 0, listen(listener, 4) == 0, getsockname(listener, raw, &length) == 0 else {
                throw PostgresParticipantError(.unavailable, "cannot listen")
            }
        }
    }
    let port = Int(UInt16(bigEndian: address.sin_port))
    let silent = #expect(throws: PostgresParticipantError.self) {
        try WireConnection.open(try PostgresLocation(url: "postgres://postgres@127.0.0.1:\(port)/none"), settings: [],
                                timeout: .seconds(5), answerTimeout: .milliseconds(300))
    }
    #expect(silent?.code == .unavailable)
    #expect(silent?.message.contains("no answer in time") == true, "\(String(describing: silent))")
}

extension WireConnection {
    /// One statement, its answer or refusal thrown.
    fileprivate func run(_ statement: PostgresStatement) throws(PostgresParticipantError) -> Answer {
        enqueue(statement)
        return try exchange()[0].get()
    }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { error } else { nil }
    }
}
