import GRDB

/// An error from ArbiterStorage: what went wrong (``code``), what to do about it (``message``), and
/// the error it came from (``cause``).
///
/// Every database failure surfaces as this type, also one raised by SQL that a caller's own
/// ``StoreWriter/write(_:_:)`` closure runs; errors of other types that such a closure throws
/// reach its caller unchanged.
public struct StorageError: Error, CustomStringConvertible {
    /// The kind of failure, for code that reacts to it.
    public enum Code: String, Hashable, Sendable {
        /// The database file cannot be opened: its directory is missing, or the path is a directory.
        case cannotOpen
        /// The database file or its directory is not writable by this process.
        case notWritable
        /// The file exists but is not an SQLite database.
        case notADatabase
        /// The database file, or a value stored in it, is damaged.
        case corrupt
        /// The database was written by a newer Arbiter whose format this one does not know.
        case schemaTooNew
        /// Creating or upgrading the tables failed.
        case migrationFailed
        /// Too many writes are waiting; nothing was written for this one.
        case overloaded
        /// The store was closed; nothing was done.
        case closed
        /// A write contradicts what is stored (a decision is final; an ended transaction cannot
        /// change state; a constraint of the caller's own tables); the write was not applied.
        case conflict
        /// An argument is out of its documented range.
        case invalidArgument
        /// The disk is full; the write was not applied.
        case diskFull
        /// The operating system reported an I/O error; the write was not applied.
        case ioError
        /// Another process holds the database's write lock beyond the busy timeout.
        case busy
        /// The calling task was cancelled before anything was done.
        case cancelled
        /// Another SQLite error; see ``StorageError/cause``.
        case sqlite
    }

    /// The kind of failure.
    public var code: Code
    /// What went wrong and what to do about it, for people.
    public var message: String
    /// The error this one stands for, when there is one (usually a GRDB `DatabaseError`).
    public var cause: (any Error)?

    /// Makes an error; `message` should say what to do, not only what happened.
    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// The code, the message, and the cause, on one line for logs.
    public var description: String {
        guard let cause else { return "\(code.rawValue): \(message)" }
        return "\(code.rawValue): \(message) (cause: \(cause))"
    }
}

extension StorageError {
    /// Classifies any error met while using the database at `path`, keeping it as the cause.
    ///
    /// `doing` names the operation ("opening", "writing", …) so that the message reads as a sentence.
    static func wrapping(_ error: any Error, doing: String, path: String) -> StorageError {
        switch error {
        case let error as StorageError:
            return error
        case is CancellationError:
            return StorageError(.cancelled, "\(doing) \(path) was cancelled before it started", cause: error)
        case let error as DatabaseError:
            return wrapping(error, doing: doing, path: path)
        default:
            return StorageError(.sqlite, "\(doing) \(path) failed: \(error)", cause: error)
        }
    }

    private static func wrapping(_ error: DatabaseError, doing: String, path: String) -> StorageError {
        let detail = error.message ?? "\(error.resultCode)"
        switch error.resultCode {
        case .SQLITE_NOTADB:
            return StorageError(.notADatabase,
                "\(path) is not an SQLite database (or is encrypted); check the path. Arbiter never overwrites a file it cannot read",
                cause: error)
        case .SQLITE_CORRUPT:
            return StorageError(.corrupt,
                "\(path) is damaged (\(detail)); restore it from a backup, or inspect it with `sqlite3 \(path) 'PRAGMA integrity_check'`",
                cause: error)
        case .SQLITE_CANTOPEN:
            return StorageError(.cannotOpen,
                "cannot open \(path) (\(detail)); check that its directory exists and that the path is not a directory",
                cause: error)
        case .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_AUTH:
            return StorageError(.notWritable,
                "\(path) or its directory is not writable (\(detail)); SQLite must be able to write the file and create \(path)-wal and \(path)-shm beside it",
                cause: error)
        case .SQLITE_FULL:
            return StorageError(.diskFull, "\(doing) \(path) failed: the disk is full; free space and retry", cause: error)
        case .SQLITE_IOERR:
            return StorageError(.ioError,
                "\(doing) \(path) failed with an I/O error (\(detail)); check the disk and the kernel log, then restart",
                cause: error)
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return StorageError(.busy,
                "\(path) is locked by another process (\(detail)); make sure only one Arbiter process uses it",
                cause: error)
        case .SQLITE_CONSTRAINT:
            return StorageError(.conflict, "\(doing) \(path) was refused: \(detail)", cause: error)
        case .SQLITE_MISUSE where detail.localizedCaseInsensitiveContains("closed"):
            return StorageError(.closed, "\(path) is closed; open it again", cause: error)
        default:
            return StorageError(.sqlite, "\(doing) \(path) failed: \(detail)", cause: error)
        }
    }
}
