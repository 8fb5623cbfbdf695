import GRDB
import GRDBSQLite
import Logging
import Synchronization

/// Runs the WAL checkpoints of one database on a connection of its own, so that no batch of the
/// ``GroupCommitWriter`` waits for one.
///
/// Why: SQLite's automatic checkpoint runs inside the commit that takes the WAL past 1,000 pages,
/// on the writer's thread. It copies those pages into the database file and fsyncs it, a few
/// milliseconds during which that batch, and every write queued behind it, waits. At a few thousand
/// transfers a second that happened twice a second in each process.
///
/// How: the writer connection's WAL hook (which replaces SQLite's automatic checkpoint on that
/// connection) reports the WAL's length after each commit; once ``threshold`` pages have been added
/// since the last checkpoint, a `PASSIVE` checkpoint runs on this connection's own queue. A passive
/// checkpoint never waits for the writer or for readers: it copies what no reader still needs, and
/// SQLite starts the WAL over from its beginning once all of it has been copied. It changes nothing
/// about durability: the WAL is synced before its pages are copied, and the database file after.
final class Checkpointer: Sendable {
    /// Pages added to the WAL since the last checkpoint that start the next one (SQLite's own
    /// automatic checkpoint uses 1,000).
    let threshold: Int
    private let connection: DatabaseQueue
    private let path: String
    private let logger: Logger
    private let state = Mutex(CheckpointState())

    private struct CheckpointState {
        var isRunning = false
        var isClosed = false
        /// The WAL's length when the last checkpoint ended; a shorter WAL has been started over.
        var walFramesAtLastCheckpoint = 0
        var checkpointCount = 0
        var failedCount = 0
    }

    /// Opens the checkpointer's own connection to the database at `path` (already in WAL mode).
    init(path: String, threshold: Int, busyTimeout: Duration, logger: Logger) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(busyTimeout.seconds)
        configuration.label = "arbiter.storage.checkpoint"
        connection = try DatabaseQueue(path: path, configuration: configuration)
        // Its own connection must not checkpoint by itself either (it never writes; this is only
        // a guard).
        try connection.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_autocheckpoint = 0") }
        self.threshold = threshold
        self.path = path
        self.logger = logger
    }

    /// How many checkpoints ran, and how many failed.
    var counts: (completed: Int, failed: Int) {
        state.withLock { ($0.checkpointCount, $0.failedCount) }
    }

    /// Installs the WAL hook on `db`, the writer connection, in place of SQLite's automatic
    /// checkpoint. The hook holds this checkpointer unretained: the writer keeps it alive for as
    /// long as its connection can commit.
    func install(on db: Database) {
        sqlite3_wal_hook(db.sqliteConnection, { context, _, _, frameCount in
            Unmanaged<Checkpointer>.fromOpaque(context!).takeUnretainedValue().walGrew(to: Int(frameCount))
            return SQLITE_OK
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Called on the writer's thread after each commit with the WAL's length in pages.
    private func walGrew(to frameCount: Int) {
        let starts = state.withLock { state -> Bool in
            if frameCount < state.walFramesAtLastCheckpoint { state.walFramesAtLastCheckpoint = 0 }
            guard !state.isRunning, !state.isClosed,
                  frameCount - state.walFramesAtLastCheckpoint >= threshold
            else { return false }
            state.isRunning = true
            return true
        }
        guard starts else { return }
        connection.asyncWriteWithoutTransaction { db in self.checkpoint(db) }
    }

    private func checkpoint(_ db: Database) {
        do {
            let (walFrameCount, _) = try db.checkpoint(.passive)
            state.withLock { state in
                state.isRunning = false
                state.walFramesAtLastCheckpoint = walFrameCount
                state.checkpointCount += 1
            }
        } catch {
            // The WAL grows meanwhile; the next commit past the threshold tries again.
            state.withLock { state in
                state.isRunning = false
                state.failedCount += 1
            }
            logger.warning("WAL checkpoint failed; it is tried again after the next writes", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }

    /// Waits for a running checkpoint, then closes the connection. Call after the writer's last
    /// commit.
    func close() throws {
        state.withLock { $0.isClosed = true }
        try connection.close()
    }
}
