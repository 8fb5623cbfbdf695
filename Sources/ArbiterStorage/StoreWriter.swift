public import GRDB
public import Logging
import Foundation
import Synchronization

/// How durable a write is when it returns.
public enum Durability: Hashable, Sendable {
    /// On disk: the transaction committed with `synchronous = FULL`, one fsync of the WAL. The
    /// fsync also makes every earlier lazy write durable, because the WAL is one ordered file.
    case forced
    /// Visible to reads, but not yet on disk: the transaction committed with `synchronous = NORMAL`
    /// (no fsync). A crash may lose it, together with every later lazy write (never an earlier
    /// one); the next forced write or WAL checkpoint makes it durable.
    case lazy
}

/// The single writer of one SQLite database: the one way into it for a service.
///
/// A service's loop writes each round as ONE transaction on its own thread (``writeNow(_:_:)``) —
/// the round is the group commit: whatever arrived while the last round's fsync ran shares the
/// next one — and reads what its machine asks for through the same connection
/// (``readOnWriter(_:)``). Everything else that writes — a resource's own routes, an operator's
/// audit entry — runs one transaction of its own on the writer's dispatch queue
/// (``write(_:_:)``), in turn with the rounds. Operators' listings read from reader connections
/// (``read(_:)``), which see a consistent snapshot while a round commits.
///
/// The writer owns a GRDB `DatabasePool` in WAL mode: one writer connection — with its cache of
/// prepared statements, which the stores' hot statements run on — plus reader connections.
public final class StoreWriter: Sendable {
    /// Limits and settings of a writer.
    public struct Options: Sendable {
        /// The most reader connections, each of which can read concurrently with the writer.
        public var readerCountMax: Int
        /// How long a write waits for another process (an operator's `sqlite3` shell, say) to release
        /// the database's write lock before failing with ``StorageError/Code/busy``.
        public var busyTimeout: Duration
        /// Where the writer reports its opening, migrations and closing.
        public var logger: Logger

        /// Makes options; the defaults suit a coordinator or participant service.
        public init(
            readerCountMax: Int = 4,
            busyTimeout: Duration = .seconds(5),
            logger: Logger = Logger(label: "arbiter.storage")
        ) {
            self.readerCountMax = readerCountMax
            self.busyTimeout = busyTimeout
            self.logger = logger
        }
    }

    /// The database file.
    public let path: String
    private let pool: DatabasePool
    private let options: Options
    private let state: Mutex<State>

    private struct State {
        var isClosed = false
        /// The writer connection's current `synchronous` level; nil when unknown.
        var synchronous: SynchronousLevel?
        var statistics = StoreWriterStatistics()
    }

    /// Opens (or creates) the database at `path`, runs `migrator`, and starts accepting writes.
    ///
    /// Opening never erases anything: a database that a newer version migrated is refused with
    /// ``StorageError/Code/schemaTooNew``, and a file that is not SQLite with
    /// ``StorageError/Code/notADatabase``.
    ///
    /// - Throws: ``StorageError`` saying what to fix (missing or unwritable directory, foreign file,
    ///   failed migration, options out of range).
    public init(path: String, migrator: DatabaseMigrator, options: Options = Options()) throws(StorageError) {
        guard options.readerCountMax >= 1 else {
            throw StorageError(.invalidArgument, "readerCountMax must be at least 1 (got \(options.readerCountMax))")
        }
        try FileLocation.check(path)
        self.path = path
        self.options = options
        self.state = Mutex(State())

        var configuration = Configuration()
        configuration.journalMode = .wal
        configuration.busyMode = .timeout(options.busyTimeout.seconds)
        configuration.maximumReaderCount = options.readerCountMax
        configuration.label = "arbiter.storage"
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
        } catch {
            throw StorageError.wrapping(error, doing: "opening", path: path)
        }
        try migrate(migrator)
        options.logger.info("opened database", metadata: ["path": "\(path)"])
    }

    // MARK: Writing

    /// Runs `work` in one transaction on the calling thread and returns once it has committed:
    /// durable for ``Durability/forced``.
    ///
    /// For a service's loop, whose round is one write, on a thread of its own: it blocks for the
    /// transaction and its fsync, so never call it from an event loop or Swift's cooperative pool.
    ///
    /// - Parameter pieces: How many pieces of work the transaction holds (a round's), for
    ///   ``statistics``.
    /// - Throws: the error `work` throws (database errors as ``StorageError``); then nothing of it
    ///   was applied.
    public func writeNow<T>(_ durability: Durability, pieces: Int = 1, _ work: (Database) throws -> T) throws -> T {
        if state.withLock({ $0.isClosed }) {
            throw StorageError(.closed, "\(path) is closed; nothing was written")
        }
        do {
            return try pool.writeWithoutTransaction { db in try transaction(durability, pieces: pieces, db, work) }
        } catch {
            throw StorageError.surfacing(error, doing: "writing to", path: path)
        }
    }

    /// Runs `work` in one transaction of its own on the writer's queue, in turn with the loop's
    /// rounds, and returns once it has committed: durable for ``Durability/forced``.
    ///
    /// For writes outside the protocol's rounds (a resource's routes, operators' audit entries).
    /// A task cancelled before the call writes nothing; once queued, a write is not withdrawn,
    /// because its caller could not tell whether it had been applied.
    ///
    /// - Throws: the error `work` throws (database errors as ``StorageError``), or ``StorageError``
    ///   with code ``StorageError/Code/closed``; then nothing of it was applied.
    public func write<T: Sendable>(
        _ durability: Durability,
        _ work: @escaping @Sendable (Database) throws -> T
    ) async throws -> T {
        if Task.isCancelled {
            throw StorageError(.cancelled, "the write to \(path) was not queued: its task was cancelled")
        }
        if state.withLock({ $0.isClosed }) {
            throw StorageError(.closed, "\(path) is closed; open it again to write")
        }
        let path = self.path
        return try await withCheckedThrowingContinuation { continuation in
            pool.asyncWriteWithoutTransaction { db in
                do {
                    continuation.resume(returning: try self.transaction(durability, pieces: 1, db, work))
                } catch {
                    continuation.resume(throwing: StorageError.surfacing(error, doing: "writing to", path: path))
                }
            }
        }
    }

    /// Runs `work` on the writer's connection on the calling thread, outside any transaction: it
    /// sees every write that has returned. For a service's loop, whose reads between its rounds'
    /// writes go the way its writes go (see ``writeNow(_:pieces:_:)`` for who may call it).
    public func readOnWriter<T>(_ work: (Database) throws -> T) throws -> T {
        if state.withLock({ $0.isClosed }) {
            throw StorageError(.closed, "\(path) is closed; open it again")
        }
        do {
            return try pool.writeWithoutTransaction(work)
        } catch {
            throw StorageError.surfacing(error, doing: "reading", path: path)
        }
    }

    /// One transaction on the writer's connection (the caller is on its queue).
    private func transaction<T>(_ durability: Durability, pieces: Int, _ db: Database, _ work: (Database) throws -> T) throws -> T {
        let started = ContinuousClock.now
        let level: SynchronousLevel = durability == .forced ? .full : .normal
        do {
            let isSet = state.withLock { state in
                defer { state.synchronous = level }
                return state.synchronous == level
            }
            if !isSet {
                do {
                    try db.cachedStatement(sql: level.pragma).execute()
                } catch {
                    state.withLock { $0.synchronous = nil }
                    throw error
                }
            }
            let changesBefore = db.totalChangesCount
            // Prepared once per connection (GRDB's beginTransaction and commit parse their SQL on
            // every call).
            try db.cachedStatement(sql: "BEGIN IMMEDIATE TRANSACTION").execute()
            let value: T
            do {
                value = try work(db)
                try db.cachedStatement(sql: "COMMIT TRANSACTION").execute()
            } catch {
                if db.isInsideTransaction { try? db.rollback() }
                throw error
            }
            if level == .full && db.totalChangesCount == changesBefore {
                // SQLite writes and syncs nothing for a transaction that changed no row, yet a
                // forced write promises that everything before it is durable, lazy writes included.
                try FileLocation.syncData(atPath: path + "-wal")
            }
            state.withLock { $0.statistics.record(pieces: pieces, isForced: level == .full, failed: false, duration: .now - started) }
            return value
        } catch {
            state.withLock { $0.statistics.record(pieces: pieces, isForced: level == .full, failed: true, duration: .now - started) }
            throw error
        }
    }

    // MARK: Reading

    /// Runs `work` in a read-only transaction on a reader connection, seeing every write that has
    /// returned.
    ///
    /// In WAL mode a reader sees a consistent snapshot while a round commits, so an operator's
    /// listing neither waits behind a round and its fsync nor delays one.
    ///
    /// - Throws: the error `work` throws (database errors as ``StorageError``).
    public func read<T: Sendable>(_ work: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.read(work)
        } catch {
            throw StorageError.surfacing(error, doing: "reading", path: path)
        }
    }

    // MARK: Lifecycle

    /// What the writer has done since it opened.
    public var statistics: StoreWriterStatistics { state.withLock { $0.statistics } }

    /// Stops accepting writes, lets the ones already queued commit, and closes the database.
    /// Closing twice is harmless.
    public func close() async throws(StorageError) {
        let wasClosed = state.withLock { state in
            defer { state.isClosed = true }
            return state.isClosed
        }
        guard !wasClosed else { return }
        do {
            // Queued behind every write already on the writer's queue.
            try await pool.writeWithoutTransaction { _ in }
            try pool.close()
        } catch {
            throw StorageError.wrapping(error, doing: "closing", path: path)
        }
        options.logger.info("closed database", metadata: ["path": "\(path)"])
    }

    /// Applies the unapplied migrations, first making the writer's commits durable (migrations are
    /// rare and must survive a crash) and refusing a database migrated by a newer version.
    private func migrate(_ migrator: DatabaseMigrator) throws(StorageError) {
        do {
            let pending = try pool.writeWithoutTransaction { db in
                try db.execute(sql: SynchronousLevel.full.pragma)
                if try migrator.hasBeenSuperseded(db) {
                    let unknown = try migrator.appliedIdentifiers(db).subtracting(migrator.migrations).sorted()
                    throw StorageError(.schemaTooNew,
                        "\(path) was migrated by a newer version (unknown migrations: \(unknown.joined(separator: ", "))); run that version, or restore a backup made before the upgrade")
                }
                let applied = try migrator.appliedIdentifiers(db)
                return migrator.migrations.filter { !applied.contains($0) }
            }
            state.withLock { $0.synchronous = .full }
            guard !pending.isEmpty else { return }
            let started = ContinuousClock.now
            try migrator.migrate(pool)
            options.logger.info("migrated", metadata: [
                "path": "\(path)",
                "migrations": "\(pending.joined(separator: ", "))",
                "seconds": "\((ContinuousClock.now - started).seconds)",
            ])
        } catch let error as StorageError {
            throw error
        } catch {
            let wrapped = StorageError.wrapping(error, doing: "migrating", path: path)
            guard wrapped.code == .sqlite || wrapped.code == .conflict else { throw wrapped }
            throw StorageError(.migrationFailed,
                "creating or upgrading the tables of \(path) failed (\(wrapped.message)); if the file belongs to another program, choose another path",
                cause: error)
        }
    }
}

/// Counts of what a ``StoreWriter`` did, for metrics and tests. A transaction is one round of a
/// service's loop, or one write of its own.
public struct StoreWriterStatistics: Hashable, Sendable {
    /// The number of entries in ``transactionSizeHistogram``.
    public static let histogramBucketCount = 16

    /// Pieces of work written (a round's pieces, or one per write of its own), succeeded or failed.
    public var pieceCount = 0
    /// Transactions that failed (nothing of them was applied).
    public var failedTransactionCount = 0
    /// Transactions run with `synchronous = FULL`: each ends with one fsync of the WAL, unless it
    /// failed.
    public var forcedTransactionCount = 0
    /// Transactions committed with `synchronous = NORMAL` (no fsync).
    public var lazyTransactionCount = 0
    /// The largest transaction, in pieces of work.
    public var transactionSizeLargest = 0
    /// Transactions by size: entry `i` counts transactions of `2^i ..< 2^(i+1)` pieces (the last
    /// entry also counts larger ones).
    public var transactionSizeHistogram = [Int](repeating: 0, count: histogramBucketCount)
    /// Time spent running and committing transactions, fsyncs included.
    public var transactionDurationTotal = Duration.zero

    /// Makes empty statistics.
    public init() {}

    /// All transactions, forced and lazy.
    public var transactionCount: Int { forcedTransactionCount + lazyTransactionCount }

    /// The mean number of pieces of work per transaction (0 before the first).
    public var transactionSizeMean: Double {
        transactionCount == 0 ? 0 : Double(pieceCount) / Double(transactionCount)
    }

    mutating func record(pieces: Int, isForced: Bool, failed: Bool, duration: Duration) {
        pieceCount += pieces
        if failed { failedTransactionCount += 1 }
        if isForced { forcedTransactionCount += 1 } else { lazyTransactionCount += 1 }
        transactionSizeLargest = max(transactionSizeLargest, pieces)
        let bucket = min(Int.bitWidth - max(pieces, 1).leadingZeroBitCount - 1, Self.histogramBucketCount - 1)
        transactionSizeHistogram[bucket] += 1
        transactionDurationTotal += duration
    }
}

/// The value of `PRAGMA synchronous` a transaction needs.
private enum SynchronousLevel: Sendable {
    case normal, full

    var pragma: String {
        switch self {
        case .normal: "PRAGMA synchronous = NORMAL"
        case .full: "PRAGMA synchronous = FULL"
        }
    }
}

extension StorageError {
    /// Turns an error met while running a caller's work into what the caller sees: database errors
    /// become ``StorageError``; the caller's own errors pass unchanged.
    static func surfacing(_ error: any Error, doing: String, path: String) -> any Error {
        switch error {
        case is DatabaseError, is CancellationError:
            return StorageError.wrapping(error, doing: doing, path: path)
        default:
            return error
        }
    }
}

extension Duration {
    /// The duration in seconds, as GRDB's busy timeout wants it.
    var seconds: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
