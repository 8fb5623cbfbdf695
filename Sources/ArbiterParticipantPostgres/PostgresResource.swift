public import ArbiterCore
import PostgresNIO

/// The business side of a participant whose data lives in PostgreSQL: what a branch's payload
/// means to the service, as ordinary SQL run in a PostgreSQL transaction.
///
/// At `prepare` the library opens a transaction on one of its connections, calls ``stage(_:in:)``,
/// and, when it votes yes, writes its own marker row in the same transaction and runs
/// `PREPARE TRANSACTION '<prefix>:<txid>'`: from then on PostgreSQL keeps the change, and the row
/// locks it took, across crashes of the participant and of PostgreSQL, until the coordinator's
/// decision arrives. A commit is `COMMIT PREPARED`, an abort `ROLLBACK PREPARED`; there is no
/// apply or discard hook, because the staged SQL *is* the change.
///
/// So ``stage(_:in:)`` must change the data for good (plain `UPDATE`s and `INSERT`s), check
/// everything the commit depends on (a CHECK constraint refusing a negative balance votes no), and
/// never wait for locks long: the library sets a short `lock_timeout` on its connections, and a
/// statement that runs into a row another transaction holds fails with SQLSTATE `55P03`, which,
/// thrown out of `stage`, becomes a `no` vote at once (no distributed deadlock; the client
/// retries). `SELECT … FOR UPDATE NOWAIT` does the same without waiting at all.
///
/// A prepared transaction cannot contain everything a transaction may: no temporary tables, no
/// `WITH HOLD` cursors, no `LISTEN`/`NOTIFY`, no advisory locks taken at session level. PostgreSQL
/// refuses the `PREPARE TRANSACTION` of one that did, and the vote is `no`.
public protocol PostgresResource: Sendable {
    /// A branch's instructions, decoded from the payload's JSON bytes with the wire protocol's
    /// strict decoder; a payload that does not decode is refused with a `no` vote naming the field.
    associatedtype Payload: Decodable & Sendable

    /// The resource's own schema, in order. Each runs once, in a transaction, after Arbiter's own
    /// tables exist; its name is recorded so that it never runs again. Never change a released
    /// migration: add a new one. Names must not start with `arbiter.`.
    var migrations: [PostgresMigration] { get }

    /// Stages `payload` for the transaction in `context`: run the change's SQL through
    /// ``PostgresStageContext/execute(_:)`` and ``PostgresStageContext/query(_:)``, and vote.
    ///
    /// Return `.yes` when the change is made and may be committed, `.no(reason:)` to refuse (the
    /// reason reaches the client), or `.readOnly` when the branch changes nothing (it then leaves
    /// phase 2; the transaction is rolled back). A vote other than `yes` and a thrown error roll
    /// the transaction back; a throw becomes `no` with the error's description.
    func stage(_ payload: Payload, in context: PostgresStageContext) throws -> Vote
}

/// One step of a resource's schema: a name, recorded once it ran, and its SQL (statements ending
/// with `;` at the end of a line).
public struct PostgresMigration: Hashable, Sendable {
    /// The migration's name, unique among the resource's (`bank.v1`).
    public var name: String
    /// Its statements.
    public var sql: String

    /// Makes a migration.
    public init(name: String, sql: String) {
        self.name = name
        self.sql = sql
    }
}

/// What ``PostgresResource/stage(_:in:)`` works with: the PostgreSQL transaction that will be
/// prepared, and the protocol transaction it stages for.
///
/// Two ways to run SQL in it:
///
/// - ``execute(_:)`` and ``query(_:)`` wait for the answer: for a stage that needs what a
///   statement returned before it goes on;
/// - ``enqueue(_:changing:reason:)`` does not wait: the statement goes to the server with the
///   next one that waits, at the latest with the library's own statements at the prepare, all in
///   one write. A stage made only of such statements is staged and prepared in one round trip to
///   PostgreSQL (``enqueue(_:check:)``, whose check runs here, costs a second).
///
/// Valid only during the call: don't keep it. Don't begin, commit, roll back or prepare
/// transactions through it (savepoints are fine).
public struct PostgresStageContext {
    /// The distributed transaction being prepared.
    public let txid: TxID
    let session: StageSession

    init(txid: TxID, session: StageSession) {
        self.txid = txid
        self.session = session
    }

    /// Runs `statement` in the transaction (after the queued ones) and returns its rows.
    ///
    /// - Throws: ``PostgresParticipantError``: `statementFailed` with the server's SQLSTATE (let
    ///   `55P03`, a row held by another transaction, propagate: the vote becomes `no` at once),
    ///   or `unavailable` when the connection broke (the prepare is retried later).
    public func query(_ statement: PostgresStatement) throws(PostgresParticipantError) -> [PostgresStageRow] {
        try session.run(statement).get().rows
    }

    /// Runs an `INSERT`, `UPDATE` or `DELETE` in the transaction (after the queued ones) and
    /// returns how many rows it changed.
    ///
    /// - Throws: as ``query(_:)``.
    @discardableResult
    public func execute(_ statement: PostgresStatement) throws(PostgresParticipantError) -> Int {
        try session.run(statement).get().count
    }

    /// Queues `statement` to run in the transaction without waiting for its answer: it goes to the
    /// server with the next statement that waits, at the latest in the same write as
    /// `PREPARE TRANSACTION`.
    ///
    /// - Parameters:
    ///   - expected: for an `INSERT`, `UPDATE` or `DELETE` without `RETURNING`: how many rows it
    ///     must change. The server checks it (the statement runs as
    ///     `WITH changed AS (… RETURNING 1) SELECT arbiter_expect_changed(count(*), n) FROM changed`),
    ///     so another count fails the transaction before it could be prepared; the error's
    ///     ``PostgresParticipantError/isUnexpectedRowCount`` is then true.
    ///   - reason: what the `no` vote says when the statement fails: given the server's refusal,
    ///     return a reason for the client, or nil for the library's own (PostgreSQL's message, or
    ///     that a row is locked). Any failure votes no.
    public func enqueue(_ statement: PostgresStatement, changing expected: Int? = nil,
                        reason: ((PostgresParticipantError) -> String?)? = nil) {
        session.enqueue(statement, changing: expected, reason: reason)
    }

    /// Queues `statement` and has `check` read its outcome: how many rows it changed (or
    /// returned), or the server's refusal. Return `.no(reason:)` to refuse the transaction, `nil`
    /// to accept (a refusal `check` accepts still votes no, with the server's message). The
    /// outcome is read before `PREPARE TRANSACTION` is sent, which costs a round trip of its own;
    /// a check the server can make (``enqueue(_:changing:reason:)``) does not.
    public func enqueue(_ statement: PostgresStatement, check: @escaping (Result<Int, PostgresParticipantError>) -> Vote?) {
        session.enqueue(statement, check: check)
    }
}

/// The statements of one stage on one connection: queued ones not yet sent, with what reads their
/// answers, and the first refusal they gave. Used by one worker thread.
final class StageSession {
    typealias Handler = (Result<WireConnection.Answer, PostgresParticipantError>) -> Void

    let connection: BlockingConnection
    private var queued: [(statement: PostgresStatement, handler: Handler?)] = []
    /// Whether a queued statement's answer must be read before `PREPARE TRANSACTION` is sent.
    private(set) var hasPendingCheck = false
    /// The first refusal: a check's `no`, or a statement the server refused.
    private(set) var refusal: Vote?
    /// The server's first refusal of a statement, kept also when a check accepted it.
    private(set) var firstFailure: PostgresParticipantError?

    init(connection: BlockingConnection) {
        self.connection = connection
    }

    /// Queues one of the library's statements; `handler` reads its answer.
    func queue(_ statement: PostgresStatement, handler: Handler? = nil) {
        queued.append((statement, handler))
    }

    func enqueue(_ statement: PostgresStatement, changing expected: Int?, reason: ((PostgresParticipantError) -> String?)?) {
        var statement = statement
        if let expected {
            statement.sql = "WITH changed AS (\(statement.sql) RETURNING 1) SELECT arbiter_expect_changed(count(*), \(expected)) FROM changed"
        }
        queued.append((statement, { [unowned self] answer in
            guard case .failure(let error) = answer else { return }
            self.refuse(error, reason: reason?(error))
        }))
    }

    func enqueue(_ statement: PostgresStatement, check: @escaping (Result<Int, PostgresParticipantError>) -> Vote?) {
        hasPendingCheck = true
        queued.append((statement, { [unowned self] answer in
            let outcome = answer.map(\.count)
            if let vote = check(outcome), case .no = vote {
                if self.refusal == nil { self.refusal = vote }
            } else if case .failure(let error) = outcome {
                self.refuse(error, reason: nil)
            }
        }))
    }

    /// Keeps the first refusal: `reason`, or what the library says of `error`.
    private func refuse(_ error: PostgresParticipantError, reason: String?) {
        guard refusal == nil else { return }
        refusal = .no(reason: reason ?? error.stageRefusal)
    }

    /// Sends the queued statements and `statement` in one write; returns `statement`'s answer.
    func run(_ statement: PostgresStatement) throws(PostgresParticipantError) -> Result<WireConnection.Answer, PostgresParticipantError> {
        queued.append((statement, nil))
        return try flush().last!
    }

    /// Sends every queued statement in one write and hands each answer to its handler; returns the
    /// answers in order. Throws only when the connection broke.
    @discardableResult
    func flush() throws(PostgresParticipantError) -> [Result<WireConnection.Answer, PostgresParticipantError>] {
        guard !queued.isEmpty else { return [] }
        let sent = queued
        queued.removeAll()
        hasPendingCheck = false
        let answers = try connection.exchange(sent.map(\.statement))
        for (entry, answer) in zip(sent, answers) {
            if case .failure(let error) = answer, firstFailure == nil { firstFailure = error }
            entry.handler?(answer)
        }
        return answers
    }
}
