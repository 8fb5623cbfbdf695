public import GRDB
public import Logging
import Foundation
import Synchronization

/// How durable a write is when ``GroupCommitWriter/write(_:_:)`` returns.
public enum Durability: Hashable, Sendable {
    /// On disk: the write's batch committed with `synchronous = FULL`, one fsync of the WAL. The
    /// fsync also makes every earlier lazy write durable, because the WAL is one ordered file.
    case forced
    /// Visible to reads, but not yet on disk: the batch committed with `synchronous = NORMAL` (no
    /// fsync). A crash may lose it, together with every later lazy write (never an earlier one);
    /// the next forced batch or WAL checkpoint makes it durable.
    case lazy
}

/// The single writer of one SQLite database: it serialises every write and commits the writes that
/// wait together in one SQLite transaction (group commit), so that many forced writes share one fsync.
///
/// Why a group: an fsync costs about as much for one transaction as for a thousand, and a forced
/// write is on every distributed transaction's hot path (the coordinator's commit decision, the
/// participant's prepared and committed records). While one batch commits, the writes that arrive
/// queue up; the next batch takes them all (up to ``Options/batchSizeMax``) in arrival order. There
/// is no timer: a lone write commits at once, and batches grow only under load.
///
/// Each write runs in its own savepoint inside the batch, so a write that throws is rolled back
/// alone and its caller gets the error while the others commit. A batch that contains a forced write
/// commits with `synchronous = FULL`; a batch of lazy writes only commits with `synchronous = NORMAL`.
///
/// The writer owns a GRDB `DatabasePool` in WAL mode: one writer connection, driven only by this
/// type, plus reader connections for ``read(_:)``. The batches run on the pool's writer dispatch
/// queue, which is the one serial queue that may touch the writer connection; no `Task` is spawned.
/// A write that finds the writer idle runs its batch through that queue on its own thread
/// (``Options/commitsOnCallerWhenIdle``), saving the hand-offs to the queue and back.
public final class GroupCommitWriter: Sendable {
    /// Limits and settings of a writer.
    public struct Options: Sendable {
        /// The most writes committed in one SQLite transaction. Bounds the latency one batch adds to
        /// the writes queued behind it, and the memory of one batch.
        public var batchSizeMax: Int
        /// The most writes waiting for a batch. A write beyond it fails at once with
        /// ``StorageError/Code/overloaded`` instead of queuing without bound.
        public var queueLengthMax: Int
        /// The most reader connections, each of which can read concurrently with the writer.
        public var readerCountMax: Int
        /// How long a write waits for another process (an operator's `sqlite3` shell, say) to release
        /// the database's write lock before failing with ``StorageError/Code/busy``.
        public var busyTimeout: Duration
        /// Whether a write that finds the writer idle commits its batch on the caller's thread
        /// instead of the writer's queue. This saves two thread hand-offs per batch (to the queue
        /// and back), which is most of a lone write's latency on a virtual machine, at the price of
        /// blocking the caller for one batch and its fsync. Writes that arrive meanwhile queue and
        /// commit on the writer's queue as usual, so the caller never runs more than one batch.
        /// Default true; turn it off when callers must never block (an event loop on a slow disk).
        public var commitsOnCallerWhenIdle: Bool
        /// Where the writer reports failed batches and its opening.
        public var logger: Logger

        /// Makes options; the defaults suit a coordinator or participant service.
        public init(
            batchSizeMax: Int = 1024,
            queueLengthMax: Int = 65_536,
            readerCountMax: Int = 4,
            busyTimeout: Duration = .seconds(5),
            commitsOnCallerWhenIdle: Bool = true,
            logger: Logger = Logger(label: "arbiter.storage")
        ) {
            self.batchSizeMax = batchSizeMax
            self.queueLengthMax = queueLengthMax
            self.readerCountMax = readerCountMax
            self.busyTimeout = busyTimeout
            self.commitsOnCallerWhenIdle = commitsOnCallerWhenIdle
            self.logger = logger
        }
    }

    /// The database file.
    public let path: String
    private let pool: DatabasePool
    private let options: Options
    private let state: Mutex<State>

    /// Opens (or creates) the database at `path`, runs `migrator`, and starts accepting writes.
    ///
    /// Opening never erases anything: a database that a newer version migrated is refused with
    /// ``StorageError/Code/schemaTooNew``, and a file that is not SQLite with
    /// ``StorageError/Code/notADatabase``.
    ///
    /// - Throws: ``StorageError`` saying what to fix (missing or unwritable directory, foreign file,
    ///   failed migration, options out of range).
    public init(path: String, migrator: DatabaseMigrator, options: Options = Options()) throws(StorageError) {
        guard options.batchSizeMax >= 1, options.queueLengthMax >= 1, options.readerCountMax >= 1 else {
            throw StorageError(.invalidArgument,
                "batchSizeMax, queueLengthMax and readerCountMax must each be at least 1 (got \(options.batchSizeMax), \(options.queueLengthMax), \(options.readerCountMax))")
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

    /// Runs `work` in the next batch and returns its result once the batch has committed: durable
    /// for ``Durability/forced``, visible to reads for ``Durability/lazy``.
    ///
    /// `work` runs on the writer's queue inside a savepoint of the batch's transaction; it must not
    /// begin, commit or roll back transactions itself (nested `db.inSavepoint` is fine). If it
    /// throws, only its own changes are rolled back and the error is thrown here. A task cancelled
    /// before the call writes nothing; once queued, a write is not withdrawn, because its caller
    /// could not tell whether it had been applied.
    ///
    /// - Throws: the error `work` throws (database errors as ``StorageError``), or ``StorageError``
    ///   with code ``StorageError/Code/overloaded``, ``StorageError/Code/closed``, or one telling why
    ///   the batch's transaction failed (nothing of this write was applied).
    public func write<T: Sendable>(
        _ durability: Durability,
        _ work: @escaping @Sendable (Database) throws -> T
    ) async throws -> T {
        if Task.isCancelled {
            throw StorageError(.cancelled, "the write to \(path) was not queued: its task was cancelled")
        }
        let path = self.path
        return try await withCheckedThrowingContinuation { continuation in
            let request = Request(
                durability: durability,
                perform: { db in
                    let value = try work(db)
                    return { continuation.resume(returning: value) }
                },
                fail: { error in
                    continuation.resume(throwing: StorageError.surfacing(error, doing: "writing to", path: path))
                }
            )
            if let refusal = submit(request) {
                continuation.resume(throwing: refusal)
            }
        }
    }

    /// Runs `work` in one transaction of its own on the calling thread and returns once it has
    /// committed: durable for ``Durability/forced``.
    ///
    /// For a caller that batches for itself — a service's loop, whose round is one write — and that
    /// runs on a thread of its own: it blocks for the transaction and its fsync, so never call it
    /// from an event loop or Swift's cooperative pool. It shares the writer connection (and its
    /// prepared statements) with ``write(_:_:)``, one at a time.
    ///
    /// - Throws: the error `work` throws (database errors as ``StorageError``); then nothing of it
    ///   was applied.
    public func writeNow<T>(_ durability: Durability, _ work: (Database) throws -> T) throws -> T {
        if state.withLock({ $0.isClosed }) {
            throw StorageError(.closed, "\(path) is closed; nothing was written")
        }
        let started = ContinuousClock.now
        let level: SynchronousLevel = durability == .forced ? .full : .normal
        do {
            let value = try pool.writeWithoutTransaction { db -> T in
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
                try db.cachedStatement(sql: "BEGIN IMMEDIATE TRANSACTION").execute()
                do {
                    let value = try work(db)
                    try db.cachedStatement(sql: "COMMIT TRANSACTION").execute()
                    if level == .full && db.totalChangesCount == changesBefore {
                        // As in a batch: a forced write promises that earlier lazy ones are durable.
                        try FileLocation.syncData(atPath: path + "-wal")
                    }
                    return value
                } catch {
                    if db.isInsideTransaction { try? db.rollback() }
                    throw error
                }
            }
            state.withLock {
                $0.statistics.record(BatchReport(size: 1, isForced: level == .full, duration: .now - started, isOnCaller: true))
            }
            return value
        } catch {
            state.withLock {
                $0.statistics.record(BatchReport(size: 1, isForced: level == .full, failedCount: 1, duration: .now - started, isOnCaller: true))
            }
            throw StorageError.surfacing(error, doing: "writing to", path: path)
        }
    }

    /// Runs `work` on the writer's connection on the calling thread, outside any transaction: it
    /// sees every write that has returned. For a service's loop, whose reads between its rounds'
    /// writes go the way its writes go (see ``writeNow(_:_:)`` for who may call it).
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

    /// Queues `request`, starting a drain of the queue when none is running; returns why the request
    /// was refused, if it was.
    private func submit(_ request: Request) -> StorageError? {
        let verdict = state.withLock { state -> Submission in
            if state.isClosed { return .refused(.closed) }
            if state.queuedCount >= options.queueLengthMax { return .refused(.overloaded) }
            state.queue.append(request)
            if state.isDraining { return .queued }
            state.isDraining = true
            return .startDrain
        }
        switch verdict {
        case .queued:
            return nil
        case .startDrain:
            if options.commitsOnCallerWhenIdle {
                pool.writeWithoutTransaction { db in self.commitOneBatch(db) }
            } else {
                pool.asyncWriteWithoutTransaction { db in self.drain(db) }
            }
            return nil
        case .refused(.closed):
            return StorageError(.closed, "\(path) is closed; open it again to write")
        case .refused(_):
            return StorageError(.overloaded,
                "\(options.queueLengthMax) writes are already waiting for \(path); retry later, or raise queueLengthMax if the disk keeps up")
        }
    }

    /// Commits batches until the queue is empty. Runs on the pool's writer queue, and only one drain
    /// runs at a time (``State/isDraining``), so batches commit strictly in order.
    ///
    /// A batch's callers are answered after its figures are recorded, so that a caller that reads
    /// ``statistics`` after its write returns sees its batch counted.
    private func drain(_ db: Database) {
        var finished: BatchResult?
        while true {
            let batch = takeBatch(recording: finished?.report)
            finished?.answerCallers()
            guard let batch else { return }
            finished = commit(batch, in: db)
        }
    }

    /// Commits one batch on the calling thread, then hands whatever queued meanwhile to the writer's
    /// queue (``Options/commitsOnCallerWhenIdle``). Runs inside the pool's synchronous write, which
    /// libdispatch runs on the calling thread because no other drain can be using the writer.
    private func commitOneBatch(_ db: Database) {
        guard let batch = takeBatch(recording: nil) else { return }
        var finished = commit(batch, in: db)
        finished.report.isOnCaller = true
        let idleWaiters = state.withLock { $0.endDrainIfEmpty(recording: finished.report) }
        if idleWaiters == nil {
            pool.asyncWriteWithoutTransaction { db in self.drain(db) }
        }
        finished.answerCallers()
        for waiter in idleWaiters ?? [] { waiter.resume() }
    }

    /// Records the previous batch's figures, then takes the next batch, or ends the drain when the
    /// queue is empty. One lock acquisition per batch does both.
    private func takeBatch(recording report: BatchReport?) -> Batch? {
        let (batch, idleWaiters) = state.withLock { state -> (Batch?, [CheckedContinuation<Void, Never>]) in
            if let idleWaiters = state.endDrainIfEmpty(recording: report) { return (nil, idleWaiters) }
            let requests = state.dequeue(upTo: options.batchSizeMax)
            let synchronous: SynchronousLevel = requests.contains { $0.durability == .forced } ? .full : .normal
            defer { state.synchronous = synchronous }
            return (Batch(requests: requests, synchronous: synchronous, synchronousIsSet: state.synchronous == synchronous), [])
        }
        for waiter in idleWaiters { waiter.resume() }
        return batch
    }

    /// Runs every request of `batch` in its own savepoint and commits; returns the figures and the
    /// callers' answers, to be given once the figures are recorded.
    ///
    /// Normally that is one SQLite transaction. If SQLite rolls the whole transaction back on a
    /// request's error (disk full, I/O error), the requests already run in it fail too, and the rest
    /// of the batch continues in a new transaction.
    private func commit(_ batch: Batch, in db: Database) -> BatchResult {
        let started = ContinuousClock.now
        var result = BatchResult(report: BatchReport(size: batch.requests.count, isForced: batch.synchronous == .full))
        result.answers.reserveCapacity(batch.requests.count)

        do {
            if !batch.synchronousIsSet {
                try db.cachedStatement(sql: batch.synchronous.pragma).execute()
            }
        } catch {
            state.withLock { $0.synchronous = nil }
            result.fail(batch.requests, error)
            result.report.duration = .now - started
            return result
        }

        let isAlone = batch.requests.count == 1
        var next = batch.requests.startIndex
        while next < batch.requests.endIndex {
            let changesBefore = db.totalChangesCount
            do {
                // Prepared once per connection (GRDB's beginTransaction and commit parse their SQL on
                // every call).
                try db.cachedStatement(sql: "BEGIN IMMEDIATE TRANSACTION").execute()
            } catch {
                result.fail(batch.requests[next...], error)
                break
            }
            var applied: [(request: Request, answer: @Sendable () -> Void)] = []
            applied.reserveCapacity(batch.requests.endIndex - next)
            while next < batch.requests.endIndex {
                let request = batch.requests[next]
                next += 1
                do {
                    // A lone write needs no savepoint: the transaction is its own.
                    let answer = try isAlone ? request.perform(db) : inSavepoint(db) { try request.perform(db) }
                    applied.append((request, answer))
                } catch {
                    result.fail(CollectionOfOne(request), error)
                    if isAlone {
                        try? db.rollback()
                    } else if !db.isInsideTransaction {
                        options.logger.error("SQLite rolled back a batch", metadata: ["path": "\(path)", "error": "\(error)"])
                        result.fail(applied.map(\.request), StorageError(.ioError,
                            "the write was rolled back with its batch after another write in it failed with \(error); retry it",
                            cause: error))
                        applied = []
                        break
                    }
                }
            }
            guard db.isInsideTransaction else { continue }
            do {
                try db.cachedStatement(sql: "COMMIT TRANSACTION").execute()
                if batch.synchronous == .full && db.totalChangesCount == changesBefore {
                    // SQLite writes and syncs nothing for a transaction that changed no row, yet a
                    // forced write promises that everything it read is durable, lazy writes included.
                    try FileLocation.syncData(atPath: path + "-wal")
                }
                result.answers.append(contentsOf: applied.map(\.answer))
            } catch {
                options.logger.error("batch commit failed", metadata: ["path": "\(path)", "error": "\(error)"])
                try? db.rollback()
                result.fail(applied.map(\.request), error)
            }
        }
        result.report.duration = .now - started
        return result
    }

    /// Runs `body` in a savepoint of the batch's transaction, rolling back only its changes if it
    /// throws.
    private func inSavepoint<T>(_ db: Database, _ body: () throws -> T) throws -> T {
        var value: T?
        try db.inPreparedSavepoint {
            value = try body()
            return .commit
        }
        return value!
    }

    // MARK: Reading

    /// Runs `work` in a read-only transaction on a reader connection, seeing the writes whose
    /// ``write(_:_:)`` has returned (the last committed batch).
    ///
    /// Reads use the pool's reader connections rather than the writer's queue: in WAL mode a reader
    /// sees a consistent snapshot while a batch commits, so an operator's listing or a recovery scan
    /// neither waits behind a batch and its fsync nor delays one.
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
    public var statistics: GroupCommitStatistics {
        state.withLock { state in
            var statistics = state.statistics
            statistics.queuedRequestCount = state.queuedCount
            return statistics
        }
    }

    /// Stops accepting writes, waits for the queued ones to commit, and closes the database.
    ///
    /// Writes queued before the call still commit; later ones fail with ``StorageError/Code/closed``.
    /// Closing twice is harmless.
    public func close() async throws(StorageError) {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isIdle = state.withLock { state -> Bool in
                state.isClosed = true
                guard state.isDraining else { return true }
                state.idleWaiters.append(continuation)
                return false
            }
            if isIdle { continuation.resume() }
        }
        do {
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

/// Counts of what a ``GroupCommitWriter`` did, for metrics and tests.
public struct GroupCommitStatistics: Hashable, Sendable {
    /// The number of entries in ``batchSizeHistogram``.
    public static let histogramBucketCount = 16

    /// Write requests waiting for a batch when the snapshot was taken (the queue's depth).
    public var queuedRequestCount = 0
    /// Write requests taken into batches (succeeded or failed).
    public var requestCount = 0
    /// Write requests that failed (their own error, or their batch's).
    public var failedRequestCount = 0
    /// Batches run with `synchronous = FULL` (at least one forced write): each ends with one fsync
    /// of the WAL, unless its transaction failed.
    public var forcedBatchCount = 0
    /// Batches of lazy writes only, committed with `synchronous = NORMAL` (no fsync).
    public var lazyBatchCount = 0
    /// The largest batch, in requests.
    public var batchSizeLargest = 0
    /// Batches by size: entry `i` counts batches of `2^i ..< 2^(i+1)` requests (the last entry also
    /// counts larger ones).
    public var batchSizeHistogram = [Int](repeating: 0, count: histogramBucketCount)
    /// Time spent running and committing batches, fsyncs included.
    public var batchDurationTotal = Duration.zero
    /// Batches committed on their caller's thread because the writer was idle
    /// (``GroupCommitWriter/Options/commitsOnCallerWhenIdle``); the others ran on the writer's queue.
    public var callerBatchCount = 0

    /// Makes empty statistics.
    public init() {}

    /// All batches, forced and lazy.
    public var batchCount: Int { forcedBatchCount + lazyBatchCount }

    /// The mean number of requests per batch (0 before the first batch).
    public var batchSizeMean: Double {
        batchCount == 0 ? 0 : Double(requestCount) / Double(batchCount)
    }

    mutating func record(_ report: BatchReport) {
        requestCount += report.size
        failedRequestCount += report.failedCount
        if report.isForced { forcedBatchCount += 1 } else { lazyBatchCount += 1 }
        batchSizeLargest = max(batchSizeLargest, report.size)
        let bucket = min(Int.bitWidth - report.size.leadingZeroBitCount - 1, Self.histogramBucketCount - 1)
        batchSizeHistogram[bucket] += 1
        batchDurationTotal += report.duration
        if report.isOnCaller { callerBatchCount += 1 }
    }
}

// MARK: - Internals

/// One caller's write, type-erased so that writes of any result type share one queue.
private struct Request: Sendable {
    let durability: Durability
    /// Runs the caller's work; on success returns what hands the result to the caller, called only
    /// after the batch commits (durable before visible).
    let perform: @Sendable (Database) throws -> @Sendable () -> Void
    let fail: @Sendable (any Error) -> Void
}

/// The value of `PRAGMA synchronous` a batch needs.
private enum SynchronousLevel: Sendable {
    case normal, full

    var pragma: String {
        switch self {
        case .normal: "PRAGMA synchronous = NORMAL"
        case .full: "PRAGMA synchronous = FULL"
        }
    }
}

private struct Batch {
    var requests: [Request]
    var synchronous: SynchronousLevel
    /// Whether the connection already runs at `synchronous`, which saves a statement per batch.
    var synchronousIsSet: Bool
}

struct BatchReport {
    var size: Int
    var isForced: Bool
    var failedCount = 0
    var duration = Duration.zero
    var isOnCaller = false
}

/// A committed (or failed) batch: its figures, and the answers owed to its callers.
private struct BatchResult {
    var report: BatchReport
    var answers: [@Sendable () -> Void] = []

    mutating func fail(_ requests: some Sequence<Request>, _ error: any Error) {
        for request in requests {
            answers.append { request.fail(error) }
            report.failedCount += 1
        }
    }

    func answerCallers() {
        for answer in answers { answer() }
    }
}

private enum Submission {
    case queued, startDrain, refused(StorageError.Code)
}

/// The writer's mutable state, guarded by its mutex.
private struct State {
    /// The waiting requests are `queue[queueHead...]`: taking a batch moves the head instead of
    /// shifting what remains, so a long queue (up to queueLengthMax) costs O(1) per request.
    var queue: [Request] = []
    var queueHead = 0
    /// True from the moment a drain is scheduled until it finds the queue empty.
    var isDraining = false
    var isClosed = false
    /// The writer connection's current `synchronous` level; nil when unknown (before migrations).
    var synchronous: SynchronousLevel?
    var statistics = GroupCommitStatistics()
    /// ``GroupCommitWriter/close()`` calls waiting for the drain to finish.
    var idleWaiters: [CheckedContinuation<Void, Never>] = []

    var queuedCount: Int { queue.count - queueHead }

    /// Records a committed batch's figures; then, when nothing is queued, ends the drain and returns
    /// the ``GroupCommitWriter/close()`` calls to resume. Returns nil while requests wait.
    mutating func endDrainIfEmpty(recording report: BatchReport?) -> [CheckedContinuation<Void, Never>]? {
        if let report { statistics.record(report) }
        guard queuedCount == 0 else { return nil }
        isDraining = false
        defer { idleWaiters = [] }
        return idleWaiters
    }

    /// Takes up to `countMax` requests from the front of the queue, in arrival order.
    mutating func dequeue(upTo countMax: Int) -> [Request] {
        if queueHead == 0 && queue.count <= countMax {
            // The usual case: the whole queue is the batch; hand over its buffer.
            defer { queue = [] }
            return queue
        }
        let end = queueHead + min(queuedCount, countMax)
        let batch = Array(queue[queueHead..<end])
        queueHead = end
        if queueHead == queue.count {
            queue.removeAll(keepingCapacity: true)
            queueHead = 0
        } else if queueHead >= 4096 && queueHead >= queue.count / 2 {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
        return batch
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
