import ArbiterPostgres
import Logging

/// One connection to the participant's database, used from one thread at a time, blocking: the
/// participant's loop and its workers run on threads of their own (never on an event loop or
/// Swift's cooperative pool), and each call waits for its answers on the calling thread
/// (``WireConnection``: no event loop, no hand-off). A broken connection is dropped and the next
/// call opens a new one; the call that found it broken throws `unavailable`.
///
/// Every connection it opens runs with `synchronous_commit = off` and the participant's
/// `lock_timeout` (set in the start-up message): only `PREPARE TRANSACTION`, `COMMIT PREPARED` and
/// `ROLLBACK PREPARED` (which PostgreSQL always flushes) and the transactions that set
/// `synchronous_commit` back on locally wait for the WAL to reach the disk. A lazy commit becomes
/// durable with the next flush, since the WAL is one ordered file.
final class BlockingConnection {
    let location: PostgresLocation
    private let settings: [(String, String)]
    private let logger: Logger
    private var wire: WireConnection?
    /// How long a statement's answer may take before the connection counts as broken: far longer
    /// than any prepare or commit (a stage waits at most the lock timeout for a row), short enough
    /// that a hung server or network frees the worker (the round is then retried).
    static var answerTimeout: Duration { .seconds(120) }

    init(location: PostgresLocation, lockTimeout: Duration, logger: Logger) {
        self.location = location
        self.logger = logger
        let milliseconds = max(1, Int(lockTimeout.components.seconds * 1000 + lockTimeout.components.attoseconds / 1_000_000_000_000_000))
        settings = [("synchronous_commit", "off"), ("lock_timeout", "\(milliseconds)")]
    }

    /// Closes the connection.
    func close() {
        wire?.close()
        wire = nil
    }

    /// Runs `statement`; returns its rows and, for an INSERT, UPDATE or DELETE, the rows it changed.
    @discardableResult
    func run(_ statement: PostgresStatement) throws(PostgresParticipantError) -> (rows: [PostgresStageRow], count: Int) {
        let answer = try exchange([statement])[0].get()
        return (answer.rows, answer.count)
    }

    /// Sends `statements` in one write and reads their answers: one round trip to the server for
    /// all of them (each still runs as if sent alone; see ``WireConnection``). Returns each one's
    /// rows, changed-row count and command tag; throws the first failure (a statement after a
    /// failed one in the same transaction fails too, or, for `PREPARE TRANSACTION` or `COMMIT` in
    /// a failed transaction, answers `ROLLBACK`: callers check the command).
    @discardableResult
    func runPipelined(_ statements: [PostgresStatement]) throws(PostgresParticipantError) -> [(rows: [PostgresStageRow], count: Int, command: String)] {
        var results: [(rows: [PostgresStageRow], count: Int, command: String)] = []
        for answer in try exchange(statements) {
            let answer = try answer.get()
            results.append((answer.rows, answer.count, answer.command))
        }
        return results
    }

    /// Sends `statements` in one write and returns each one's answer or refusal; throws only when
    /// the connection broke (`unavailable`; the next call reconnects).
    func exchange(_ statements: [PostgresStatement]) throws(PostgresParticipantError) -> [Result<WireConnection.Answer, PostgresParticipantError>] {
        let wire = try connected()
        for statement in statements { wire.enqueue(statement) }
        do {
            return try wire.exchange()
        } catch {
            self.wire = nil
            throw error
        }
    }

    /// Runs `sql` (no binds), which may hold several statements separated by `;` at line ends.
    func script(_ sql: String) throws(PostgresParticipantError) {
        for statement in Self.statements(sql) {
            try run(PostgresStatement(unsafeSQL: statement))
        }
    }

    /// Rolls back whatever transaction the connection is in, ignoring errors (a broken connection
    /// has lost its transaction anyway).
    func rollbackQuietly() {
        guard let wire, !wire.isBroken else { return }
        _ = try? run("ROLLBACK")
    }

    /// The statements of a script: split after each `;` that ends a line outside a `$$` body;
    /// comment lines are dropped.
    static func statements(_ sql: String) -> [String] {
        var statements: [String] = []
        var current: [Substring] = []
        var inBody = false
        for line in sql.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if !inBody, trimmed.hasPrefix("--") || trimmed.isEmpty { continue }
            current.append(line)
            if line.split(separator: "$$", omittingEmptySubsequences: false).count % 2 == 0 { inBody.toggle() }
            if !inBody, trimmed.hasSuffix(";") {
                statements.append(current.joined(separator: "\n"))
                current.removeAll()
            }
        }
        let rest = current.joined(separator: "\n")
        if rest.contains(where: { !$0.isWhitespace }) { statements.append(rest) }
        return statements
    }

    private func connected() throws(PostgresParticipantError) -> WireConnection {
        if let wire, !wire.isBroken { return wire }
        wire = nil
        let opened = try WireConnection.open(location, settings: settings, timeout: .seconds(5), answerTimeout: Self.answerTimeout)
        wire = opened
        return opened
    }
}
