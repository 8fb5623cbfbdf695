/// What went wrong with a PostgreSQL participant's database, and what to do about it.
public struct PostgresParticipantError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public enum Code: String, Hashable, Sendable {
        /// The server refused a statement (see ``PostgresParticipantError/sqlState``); the
        /// connection stays usable once its transaction is rolled back.
        case statementFailed
        /// The database cannot be reached, or the connection broke; the work is retried.
        case unavailable
        /// The server's configuration does not allow a participant (`max_prepared_transactions`).
        case misconfigured
        /// The database holds a schema this version does not know, or a migration failed.
        case schema
        /// An option is out of its range.
        case invalidOptions
    }

    /// The kind of failure.
    public var code: Code
    /// The SQLSTATE the server answered with (`55P03`: a lock was not available in time; `23514`:
    /// a CHECK constraint refused the row), when it did.
    public var sqlState: String?
    /// What went wrong and what to do, for people.
    public var message: String

    /// Makes an error; `message` should say what to do, not only what happened.
    public init(_ code: Code, _ message: String, sqlState: String? = nil) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
    }

    /// Whether the statement waited for a row lock longer than the participant's lock timeout
    /// (SQLSTATE `55P03`, also `NOWAIT`'s): another transaction holds the row.
    public var isLockNotAvailable: Bool { sqlState == "55P03" }
    /// Whether a CHECK constraint refused a row (SQLSTATE `23514`).
    public var isCheckViolation: Bool { sqlState == "23514" }
    /// Whether a statement queued with an expected row count changed another number of rows
    /// (SQLSTATE `ZA001`, raised by `arbiter_expect_changed`).
    public var isUnexpectedRowCount: Bool { sqlState == "ZA001" }

    /// The kind, the message and the SQLSTATE, for logs and replies.
    public var description: String {
        switch code {
        case .statementFailed: "PostgreSQL refused a statement: \(message)\(sqlState.map { " (SQLSTATE \($0))" } ?? "")"
        case .unavailable: "PostgreSQL unavailable: \(message)"
        case .misconfigured: "PostgreSQL configuration: \(message)"
        case .schema: "PostgreSQL schema: \(message)"
        case .invalidOptions: "invalid options: \(message)"
        }
    }
}

extension PostgresParticipantError {
    /// The `no` vote's reason when a stage's statement failed with this error.
    var stageRefusal: String {
        isLockNotAvailable
            ? "a row this transaction needs is locked by another transaction (\(message)); retry when it has ended"
            : "staging failed: \(self)"
    }
}
