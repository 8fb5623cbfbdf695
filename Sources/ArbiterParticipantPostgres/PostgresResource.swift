public import ArbiterCore
public import PostgresNIO

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
/// Valid only during the call: don't keep it. Don't begin, commit, roll back or prepare
/// transactions through it (savepoints are fine).
public struct PostgresStageContext {
    /// The distributed transaction being prepared.
    public let txid: TxID
    let connection: BlockingConnection

    init(txid: TxID, connection: BlockingConnection) {
        self.txid = txid
        self.connection = connection
    }

    /// Runs `query` in the transaction and returns its rows.
    ///
    /// - Throws: ``PostgresParticipantError``: `statementFailed` with the server's SQLSTATE (let
    ///   `55P03`, a row held by another transaction, propagate: the vote becomes `no` at once),
    ///   or `unavailable` when the connection broke (the prepare is retried later).
    public func query(_ query: PostgresQuery) throws(PostgresParticipantError) -> [PostgresRow] {
        try connection.run(query).rows
    }

    /// Runs an `INSERT`, `UPDATE` or `DELETE` in the transaction and returns how many rows it
    /// changed.
    ///
    /// - Throws: as ``query(_:)``.
    @discardableResult
    public func execute(_ query: PostgresQuery) throws(PostgresParticipantError) -> Int {
        try connection.run(query).count
    }
}
